/**
 * `tickpipe status`: one screen (or `--json`) with the state of every part.
 * @module
 */

import { CONNECTION_FLAGS, CONNECTION_TITLE, parseCommandLine } from "../common/cli.ts";
import { loadBaseConfig } from "../common/config.ts";
import { sectionsUsage } from "../common/options.ts";
import { STATUS_COMMAND, STATUS_FLAGS } from "./options.ts";

const USAGE = `Usage: tickpipe status [flags]

Shows Kafka and PostgreSQL reachability, topic end offsets, stored offsets and lag,
the aggregator lease and last progress record, the engine settings of the checkpoint
(window resolutions, watermark delay, open windows, when idle finalization is due),
the ingest rate on the topic, the topic's windows per resolution (rows, final rows)
with their freshness, its late ticks, and the newest windows.

${
  sectionsUsage([
    { title: "Flags:", table: STATUS_FLAGS },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}`;

/**
 * Runs the command; returns the exit code: 0 when Kafka and PostgreSQL are reachable, 2 when
 * either refused the configured settings (credentials, database, TLS), else 1.
 */
export async function main(args: string[]): Promise<number> {
  const { options: values } = parseCommandLine(args, STATUS_COMMAND);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const config = loadBaseConfig(values);
  const newest = values.newest;
  const { createKafka } = await import("../common/kafka.ts");
  const { createPool } = await import("../common/pg.ts");
  const { openKv } = await import("../common/kv.ts");
  const { createLogger } = await import("../common/log.ts");
  const { collectStatus, renderStatus } = await import("./status.ts");
  // A broker the cluster advertises that this process may not reach: exit 2 naming it, at once.
  // Refused TLS settings (a certificate either side does not trust) are shown as Kafka REFUSED
  // in the table, like refused SASL credentials.
  const { exitDenied } = await import("../common/permissions.ts");
  const { KafkaSecurityError } = await import("../common/kafka_security.ts");
  let kafkaRefused: InstanceType<typeof KafkaSecurityError> | undefined;
  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-status",
    retries: 1,
    logger: createLogger("status", { level: "error" }),
    onDenied: (e) => {
      if (e instanceof KafkaSecurityError) kafkaRefused ??= e;
      else exitDenied(e);
    },
  });
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-status", max: 1 });
  const kv = await openKv(config.kvPath);
  try {
    const s = await collectStatus(config, { kafka, pool, kv, kafkaRefused: () => kafkaRefused }, {
      rateSampleMs: values["no-rate"] ? 0 : 1000,
      newest,
      newestLate: 1,
    });
    console.log(values.json ? JSON.stringify(s, null, 2) : renderStatus(s));
    // Refused settings (Kafka's TLS or SASL, PostgreSQL's credentials, database or TLS) are a
    // configuration error (2), not an outage (1).
    if (s.kafka.refused || s.postgres.refused) return 2;
    return s.kafka.reachable && s.postgres.reachable ? 0 : 1;
  } finally {
    kv.close();
    await pool.end();
  }
}
