/**
 * `tickpipe compile` (`deno task compile`): builds dist/tickpipe-sensor and
 * dist/tickpipe-aggregate with `deno compile`, each with its permission set
 * baked in and sql/ included.
 * @module
 */

import { parseCommandLine, rejectPositionals } from "../common/cli.ts";
import { sectionsUsage } from "../common/options.ts";
import { COMPILE_COMMAND } from "./options.ts";
import { readEnv } from "../common/config.ts";
import { createLogger } from "../common/log.ts";

const USAGE = `Usage: tickpipe compile [--out-dir DIR] [--target TRIPLE]

Builds DIR/tickpipe-aggregate (-P=aggregate) and DIR/tickpipe-sensor (-P=sensor,
plus running DIR/tickpipe-aggregate) with deno compile, sql/ included. Each binary
may reach exactly the hosts and paths of this build's configuration (KAFKA_BROKERS
and the brokers the cluster advertises, DATABASE_URL, TICKPIPE_KV), as "deno task"
would allow them: build under the configuration the binaries will run with. Run them as
  dist/tickpipe-sensor sensor --once ...   and   dist/tickpipe-aggregate aggregate ...
deno compile downloads its runtime (denort) unless DENORT_BIN names one.

${sectionsUsage([{ title: "Flags:", table: COMPILE_COMMAND }])}

Exit codes: 0 built, 1 deno compile failed (e.g. no denort runtime), 2 bad flags.`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: values, positionals } = parseCommandLine(args, COMPILE_COMMAND);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const log = createLogger("compile");
  const { compileSteps, DENORT_HINT, isRuntimeDownloadFailure } = await import("./compile.ts");
  const { projectFiles } = await import("../common/child.ts");
  const outDir = values["out-dir"];
  await Deno.mkdir(outDir, { recursive: true });
  const denort = readEnv("DENORT_BIN");
  const { launchFlags } = await import("../common/permissions.ts");
  const files = projectFiles();
  const derive = (command: string) => launchFlags(command, [], { env: readEnv, root: files.root });
  const permissions = { aggregate: derive("aggregate"), sensor: derive("sensor") };
  for (const step of compileSteps({ ...files, outDir, target: values.target, permissions })) {
    log.info("compiling", { binary: step.output, denort: denort ?? "(download)" });
    const out = await new Deno.Command("deno", {
      args: step.args,
      env: denort ? { DENORT_BIN: denort } : {},
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.code !== 0) {
      const tail = stderr.trim().split("\n").slice(-6).join("\n");
      if (!denort && isRuntimeDownloadFailure(stderr)) {
        console.error(`${DENORT_HINT}\n(deno compile said: ${tail})`);
      } else {
        console.error(`deno compile of ${step.output} failed (exit ${out.code}):\n${tail}`);
      }
      return 1;
    }
    log.info("built", { binary: step.output });
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
