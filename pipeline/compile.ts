/**
 * `deno compile` command lines for the standalone sensor and aggregator
 * binaries, each with its permission set from deno.json and the hosts and
 * paths derived from the build's configuration (as the launcher derives them)
 * baked in. Pure.
 * @module
 */

/** One binary to build. */
export interface CompileStep {
  /** Binary name, e.g. `tickpipe-sensor`. */
  name: string;
  /** Output path. */
  output: string;
  /** Arguments to `deno`. */
  args: string[];
}

/** Where the project lives and where binaries go. */
export interface CompileOptions {
  /** Absolute path of deno.json. */
  configPath: string;
  /** Absolute path of main.ts. */
  mainPath: string;
  /** Output folder (absolute or relative to the current directory), default `dist`. */
  outDir?: string;
  /** Target triple for cross compilation, if any. */
  target?: string;
  /**
   * Derived permission flags baked into each binary (common/permissions.ts `launchFlags`);
   * default none: the permission set's own lists.
   */
  permissions?: { aggregate?: readonly string[]; sensor?: readonly string[] };
}

/** Builds the `deno compile` steps: aggregator first, then the sensor that launches it. */
export function compileSteps(options: CompileOptions): CompileStep[] {
  const outDir = (options.outDir ?? "dist").replace(/\/+$/, "");
  const root = options.configPath.slice(0, options.configPath.lastIndexOf("/"));
  const target = options.target ? ["--target", options.target] : [];
  const agg = `${outDir}/tickpipe-aggregate`;
  const aggAbs = agg.startsWith("/") ? agg : `${Deno.cwd()}/${agg}`;
  const step = (name: string, set: string, extra: string[]): CompileStep => {
    const output = `${outDir}/${name}`;
    return {
      name,
      output,
      args: [
        "compile",
        "--no-prompt",
        `-P=${set}`,
        ...extra,
        "--config",
        options.configPath,
        "--include",
        `${root}/sql/`,
        ...target,
        "--output",
        output,
        options.mainPath,
      ],
    };
  };
  return [
    step("tickpipe-aggregate", "aggregate", [...(options.permissions?.aggregate ?? [])]),
    // The sensor's set allows running "deno"; the standalone sensor runs the
    // compiled aggregator beside it instead, so that path is allowed too.
    step("tickpipe-sensor", "sensor", [
      ...(options.permissions?.sensor ?? []),
      `--allow-run=deno,${aggAbs}`,
    ]),
  ];
}

/** Message for a `deno compile` that could not get its runtime. */
export const DENORT_HINT =
  "deno compile needs the denort runtime: set DENORT_BIN=/path/to/denort (the denort binary of " +
  "the same Deno version, from the deno release archives) when this machine cannot download it";

/** True when `deno compile`'s output says it failed to fetch the runtime. */
export function isRuntimeDownloadFailure(stderr: string): boolean {
  return /dns error|download|denort|failed to lookup|error sending request|connect/i.test(stderr);
}
