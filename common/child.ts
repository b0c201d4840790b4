/**
 * Child processes of tickpipe: the one builder of `deno run` command lines for main.ts commands,
 * the one line pump for their output, and the one formatter of the lines a parent relays (text:
 * `[name] line`; `LOG_FORMAT=json`: one JSON object per line, with the child's name in `child`).
 * @module
 */

import { type LogFormat, logFormat, redact, redactValue } from "./log.ts";

/** Absolute paths of this project's root, deno.json and main.ts (from this module's location). */
export function projectFiles(): { root: string; configPath: string; mainPath: string } {
  const p = (rel: string) => decodeURIComponent(new URL(rel, import.meta.url).pathname);
  return { root: p("../"), configPath: p("../deno.json"), mainPath: p("../main.ts") };
}

/** Options for {@linkcode denoRunArgs}. */
export interface DenoRunOptions {
  /** Permission set (`-P=<set>`); default: the command's name. `null`: no permission flag. */
  permissionSet?: string | null;
  /** `-A` instead of a permission set (benchmarks; tests that need an ephemeral port). */
  allowAll?: boolean;
  /** More `deno run` flags, placed before the script (e.g. `--allow-net=...`). */
  denoFlags?: readonly string[];
  /** deno.json (default: this project's, absolute). */
  configPath?: string;
  /** main.ts (default: this project's, absolute). */
  mainPath?: string;
}

/**
 * The argv after the deno executable that runs `main.ts <command> ...args`:
 * `run --quiet --no-prompt -P=<set> --config <deno.json> <main.ts> <command> ...args`
 * (`--quiet`: no Deno diagnostics such as the "Permissions in the config file" warning among the
 * child's lines; its errors are still printed).
 */
export function denoRunArgs(
  command: string,
  args: readonly string[],
  options: DenoRunOptions = {},
): string[] {
  const files = options.configPath === undefined || options.mainPath === undefined
    ? projectFiles()
    : undefined;
  const set = options.permissionSet === undefined ? command : options.permissionSet;
  const perm = options.allowAll ? ["-A"] : set === null ? [] : [`-P=${set}`];
  return [
    "run",
    "--quiet",
    "--no-prompt",
    ...perm,
    ...(options.denoFlags ?? []),
    "--config",
    options.configPath ?? files!.configPath,
    options.mainPath ?? files!.mainPath,
    command,
    ...args,
  ];
}

/**
 * Reads `stream` as UTF-8 and calls `onLine` with each line (without `\n` or `\r\n`), the last
 * one too when it has no newline. Resolves when the stream ends; a stream that errors (the
 * process went away) ends it quietly.
 */
export async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  const drain = () => {
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl).replace(/\r$/, ""));
      buf = buf.slice(nl + 1);
    }
  };
  try {
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      drain();
    }
  } catch { /* the stream closed with the process */ }
  buf += decoder.decode();
  drain();
  if (buf !== "") onLine(buf);
}

/** Options for {@linkcode relayLine}. */
export interface RelayOptions {
  /** `text`: `[name] line`; `json`: a JSON object per line (default: `LOG_FORMAT`). */
  format?: LogFormat;
  /** Which output of the child the line came from (json mode; default stdout). */
  stream?: "stdout" | "stderr";
  /** Clock for lines that were not JSON (json mode; default Date.now). */
  now?: () => number;
}

/**
 * Formats a line of child `name`'s output for the parent's output, redacted. Text: `[name] line`.
 * JSON: a JSON object line gets `child: name` (or `name/<its child>` when it was relayed
 * already); any other line is wrapped as `{ts, level: "info", component, child, stream, msg}`.
 */
export function relayLine(name: string, line: string, options: RelayOptions = {}): string {
  const format = options.format ?? logFormat();
  if (format === "text") return redact(`[${name}] ${line}`);
  if (line.startsWith("{")) {
    try {
      const obj = JSON.parse(line);
      if (obj !== null && typeof obj === "object" && !Array.isArray(obj)) {
        const inner = typeof obj.child === "string" ? obj.child : undefined;
        return JSON.stringify(redactValue({ ...obj, child: inner ? `${name}/${inner}` : name }));
      }
    } catch { /* not JSON: wrapped below */ }
  }
  return JSON.stringify({
    ts: new Date((options.now ?? Date.now)()).toISOString(),
    level: "info",
    component: name,
    child: name,
    stream: options.stream ?? "stdout",
    msg: redact(line),
  });
}

/** Options for {@linkcode relayOutput}. */
export interface RelayOutputOptions extends RelayOptions {
  /** Where each formatted line goes. */
  write: (line: string) => void;
}

/** Pumps `stream` of child `name` line by line through {@linkcode relayLine} into `write`. */
export function relayOutput(
  stream: ReadableStream<Uint8Array>,
  name: string,
  options: RelayOutputOptions,
): Promise<void> {
  const format = options.format ?? logFormat();
  return pumpLines(stream, (line) => options.write(relayLine(name, line, { ...options, format })));
}
