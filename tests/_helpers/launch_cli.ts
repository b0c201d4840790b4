/**
 * Runs `main.ts` in the project root as a user would: through the launcher
 * (`deno run -P=launch main.ts launch <command>`, what `deno task <command>` runs) or with deno
 * flags of the test's choosing, with an environment of the test's choosing.
 * @module
 */

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

/** What {@linkcode runMain} returns. */
export interface MainRun {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
  /** Wall time in ms. */
  ms: number;
}

/** Options for {@linkcode runMain} and {@linkcode launchCli}. */
export interface MainRunOptions {
  /** Environment added to this process' (NO_COLOR=1 is always set). */
  env?: Record<string, string>;
  /** Killed (SIGKILL) after this long (default 60 s). */
  timeoutMs?: number;
}

/** Runs `deno run -q --no-prompt <denoArgs> main.ts <args>` in the project root. */
export async function runMain(
  denoArgs: string[],
  args: string[],
  options: MainRunOptions = {},
): Promise<MainRun> {
  const t0 = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", ...denoArgs, "main.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, options.timeoutMs ?? 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    ms: Date.now() - t0,
  };
}

/** `deno task <command> <args>`; `output` is stdout then stderr. */
export async function launchCli(
  command: string,
  args: string[],
  options: MainRunOptions = {},
): Promise<MainRun & { output: string }> {
  const r = await runMain(["-P=launch"], ["launch", command, ...args], options);
  return { ...r, output: r.stdout + r.stderr };
}
