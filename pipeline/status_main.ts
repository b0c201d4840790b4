/**
 * `tickpipe status`: one screen (or `--json`) with the state of every part.
 * @module
 */

import { BASE_OPTIONS, BASE_USAGE, parseFlags } from "../common/cli.ts";
import { loadBaseConfig, parsePositive } from "../common/config.ts";

const USAGE = `Usage: tickpipe status [flags]

Shows Kafka and PostgreSQL reachability, topic end offsets, stored offsets and lag,
the aggregator lease and last progress record, the engine settings of the checkpoint
(window resolutions, watermark delay, open windows, when idle finalization is due),
the ingest rate on the topic, the topic's windows per resolution (rows, final rows)
with their freshness, its late ticks, and the newest windows.

Flags:
  --json          print one JSON object
  --newest N      how many newest windows to show (default 10)
  --no-rate       skip the 1 s sampling of the ingest rate

${BASE_USAGE}`;

/** Runs the command; returns the exit code (0 when Kafka and PostgreSQL are reachable). */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    ...BASE_OPTIONS,
    json: { type: "boolean" },
    newest: { type: "string" },
    "no-rate": { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const config = loadBaseConfig(values);
  const newest = parsePositive(values.newest, "--newest", { fallback: 10, integer: true, min: 0 });
  const { createKafka } = await import("../common/kafka.ts");
  const { createPool } = await import("../common/pg.ts");
  const { openKv } = await import("../common/kv.ts");
  const { createLogger } = await import("../common/log.ts");
  const { collectStatus, renderStatus } = await import("./status.ts");
  // A broker the cluster advertises that this process may not reach: exit 2 naming it, at once.
  const { exitDenied } = await import("../common/permissions.ts");
  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-status",
    retries: 1,
    logger: createLogger("status", { level: "error" }),
    onDenied: exitDenied,
  });
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-status", max: 1 });
  const kv = await openKv(config.kvPath);
  try {
    const s = await collectStatus(config, { kafka, pool, kv }, {
      rateSampleMs: values["no-rate"] ? 0 : 1000,
      newest,
      newestLate: 1,
    });
    console.log(values.json ? JSON.stringify(s, null, 2) : renderStatus(s));
    return s.kafka.reachable && s.postgres.reachable ? 0 : 1;
  } finally {
    kv.close();
    await pool.end();
  }
}
