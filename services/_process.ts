/**
 * Process helpers for local services: run a command to completion, start a
 * detached daemon, probe a TCP port.
 * @module
 */

/** Raised when a local service cannot be set up; the message says what to do. */
export class ServiceError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ServiceError";
  }
}

/** Result of {@linkcode run}. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Captured stdout. */
  stdout: string;
  /** Captured stderr. */
  stderr: string;
}

/** Runs `cmd` with `args` to completion, capturing output. Missing binaries throw ServiceError. */
export async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ServiceError(`Command "${cmd}" was not found on PATH`, { cause: e });
    }
    throw e;
  }
}

/** Starts `cmd` detached in its own session (survives this process); returns its pid. */
export function spawnDetached(cmd: string, args: string[], options: { cwd?: string } = {}): number {
  const child = new Deno.Command("setsid", {
    args: [cmd, ...args],
    cwd: options.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  return child.pid;
}

/** True when something accepts TCP connections on `hostname:port`. */
export async function portOpen(hostname: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** True when process `pid` exists (`kill -0`; Deno restricts /proc, so no direct read). */
export async function pidAlive(pid: number): Promise<boolean> {
  return (await run("kill", ["-0", String(pid)])).code === 0;
}

/** Sends `signal` to `pid` with the `kill` command (so only that binary needs run permission). */
export async function killPid(
  pid: number,
  signal: "TERM" | "KILL" | "INT" | "STOP" | "CONT",
): Promise<void> {
  await run("kill", [`-${signal}`, String(pid)]);
}

/** Reads the tail (last `lines` lines) of a text file, or "" when missing. */
export async function tail(path: string, lines = 20): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Polls `check` every `intervalMs` until it returns true or `timeoutMs` passes. */
export async function waitFor(
  check: () => Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number },
): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 250));
  }
  return await check();
}
