/**
 * Runs a command through the launcher (`deno run -P=launch main.ts launch <command>`, what
 * `deno task <command>` runs), as a user would, with an environment of the test's choosing.
 * @module
 */

/** What {@linkcode launchCli} returns. */
export interface LaunchResult {
  /** Exit code. */
  code: number;
  /** stdout then stderr. */
  output: string;
  /** Wall time in ms. */
  ms: number;
}

/** Runs `deno task <command> <args>` with `env` added; killed after `timeoutMs`. */
export async function launchCli(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<LaunchResult> {
  const t0 = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=launch", "main.ts", "launch", command, ...args],
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, options.timeoutMs ?? 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    output: dec.decode(out.stdout) + dec.decode(out.stderr),
    ms: Date.now() - t0,
  };
}
