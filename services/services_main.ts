/**
 * `tickpipe services [up|down|status]`: the local Kafka broker and PostgreSQL server.
 * @module
 */

import { BASE_USAGE, parseCommandLine, UsageError } from "../common/cli.ts";
import { sectionsUsage } from "../common/options.ts";
import { SERVICES_COMMAND, SERVICES_FLAGS } from "./options.ts";
import { loadBaseConfig, readEnv } from "../common/config.ts";
import { createLogger } from "../common/log.ts";
import { DEFAULT_KAFKA_VERSION, KAFKA_VERSIONS, parseKafkaVersion } from "./kafka.ts";

const USAGE = `Usage: tickpipe services [up|down|status] [flags]

  up       (default) start Kafka (KRaft, 127.0.0.1:9092) and PostgreSQL (127.0.0.1:5432,
           database tickpipe) under .data/ unless they already answer; apply migrations
  down     stop the local services started by "up"
  status   say what runs where (--json for scripts)

${sectionsUsage([{ title: "Flags:", table: SERVICES_FLAGS }])}

Environment:
  KAFKA_VERSION     the local broker's version: ${
  KAFKA_VERSIONS.map((v) => v === DEFAULT_KAFKA_VERSION ? `${v} (default)` : v).join(", ")
}

${BASE_USAGE}`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: values, positionals } = parseCommandLine(args, SERVICES_COMMAND);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const action = positionals[0] ?? "up";
  const config = loadBaseConfig(values);
  const kafkaVersion = parseKafkaVersion(readEnv("KAFKA_VERSION"));
  const log = createLogger("services");
  // npm-backed modules load only after flags are parsed, so --help needs no permission.
  const { servicesDown, servicesStatus, servicesUp } = await import("./mod.ts");
  const { checkDatabase, createPool } = await import("../common/pg.ts");
  const { migrate } = await import("../sql/migrate.ts");
  if (action === "up") {
    const t0 = performance.now();
    const r = await servicesUp(config, log, {
      kafkaVersion,
      upgradeKafka: values["upgrade-kafka"],
    });
    const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-services" });
    try {
      await checkDatabase(pool, config.databaseUrl);
      await migrate(pool, { logger: log });
    } finally {
      await pool.end();
    }
    log.info("services ready", {
      kafka: `${r.kafka} at ${config.brokers.join(",")}`,
      postgres: r.postgres,
      seconds: ((performance.now() - t0) / 1000).toFixed(1),
    });
    return 0;
  }
  if (action === "down") {
    const r = await servicesDown();
    log.info("services stopped", {
      kafka: r.kafka ? "stopped" : "was not running",
      postgres: r.postgres ? "stopped" : "was not running",
    });
    return 0;
  }
  if (action === "status") {
    const s = await servicesStatus(config, { kafkaVersion });
    if (values.json) {
      console.log(JSON.stringify(s, null, 2));
    } else {
      console.log(
        `kafka     ${s.kafka.reachable ? "up  " : "DOWN"} KAFKA_BROKERS=${
          s.kafka.brokers.join(",")
        }` +
          (s.kafka.localPid
            ? ` (local broker ${s.kafka.version ?? "of unknown version"}, pid ${s.kafka.localPid}` +
              (s.kafka.version !== undefined && s.kafka.version !== s.kafka.selected
                ? `; KAFKA_VERSION selects ${s.kafka.selected}`
                : "") +
              ")"
            : ""),
      );
      console.log(
        `postgres  ${s.postgres.reachable ? "up  " : "DOWN"} DATABASE_URL=${s.postgres.url}` +
          (s.postgres.localPid ? ` (local cluster .data/pg, pid ${s.postgres.localPid})` : "") +
          (s.postgres.error ? ` error: ${s.postgres.error}` : ""),
      );
    }
    return s.kafka.reachable && s.postgres.reachable ? 0 : 1;
  }
  throw new UsageError(`Unknown action "${action}": expected up, down or status`);
}
