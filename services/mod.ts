/**
 * Local infrastructure for development, tests and the demo: a real Kafka
 * broker and a real PostgreSQL server, started and stopped by the project.
 * @module
 */

import { type BaseConfig } from "../common/config.ts";
import { createKafka } from "../common/kafka.ts";
import { type Logger, redact } from "../common/log.ts";
import { ServiceError } from "./_process.ts";
import {
  DEFAULT_KAFKA_VERSION,
  kafkaPid,
  type KafkaVersion,
  localKafkaVersion,
  startKafka,
  stopKafka,
} from "./kafka.ts";
import { postgresPid, probeDatabase, startPostgres, stopPostgres } from "./postgres.ts";

export {
  DEFAULT_KAFKA_VERSION,
  KAFKA_VERSIONS,
  KafkaDataVersionError,
  kafkaPid,
  type KafkaVersion,
  localKafkaVersion,
  parseKafkaVersion,
  startKafka,
  stopKafka,
} from "./kafka.ts";
export { postgresPid, probeDatabase, startPostgres, stopPostgres } from "./postgres.ts";
export { ServiceError } from "./_process.ts";

/** Absolute `.data` folder of the project (under the working directory). */
export function dataDir(): string {
  return `${Deno.cwd()}/.data`;
}

/** Absolute path of services/kafka. */
export function kafkaServiceDir(): string {
  return new URL("./kafka", import.meta.url).pathname;
}

/** True when a Kafka broker answers a metadata request at `brokers`. */
export async function probeKafka(brokers: string[], timeoutMs = 2000): Promise<boolean> {
  const kafka = createKafka(brokers, {
    clientId: "tickpipe-probe",
    retries: 0,
    connectionTimeout: timeoutMs,
    logger: {
      debug() {},
      info() {},
      warn() {},
      error() {},
      child() {
        return this;
      },
    },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function localPort(broker: string): number | undefined {
  const m = /^(127\.0\.0\.1|localhost):(\d+)$/.exec(broker);
  return m ? Number(m[2]) : undefined;
}

/** Options for {@linkcode servicesUp}. */
export interface ServicesUpOptions {
  /** Broker version to start (KAFKA_VERSION; default {@linkcode DEFAULT_KAFKA_VERSION}). */
  kafkaVersion?: KafkaVersion;
  /** Allow starting a newer broker on data an older one formatted (`--upgrade-kafka`). */
  upgradeKafka?: boolean;
}

/** Brings Kafka and PostgreSQL up (idempotent); returns what happened to each. */
export async function servicesUp(
  config: BaseConfig,
  logger: Logger,
  options: ServicesUpOptions = {},
): Promise<{ kafka: "started" | "running"; postgres: "started" | "running" }> {
  const dir = dataDir();
  const version = options.kafkaVersion ?? DEFAULT_KAFKA_VERSION;
  await Deno.mkdir(dir, { recursive: true });
  let kafka: "started" | "running";
  if (await probeKafka(config.brokers)) {
    kafka = "running";
    const running = await localKafkaVersion(dir);
    if (running !== undefined && running !== version) {
      logger.warn(
        `the local broker runs Kafka ${running}, not the selected ${version}: to switch, run ` +
          `"deno task services down", then "deno task services up" (it says what to do with ` +
          `the data ${running} wrote)`,
        { running, selected: version },
      );
    }
  } else {
    const port = config.brokers.length === 1 ? localPort(config.brokers[0]) : undefined;
    if (port === undefined) {
      throw new ServiceError(
        `KAFKA_BROKERS=${config.brokers.join(",")} does not answer and is not a single local ` +
          `broker, so none is started: start that cluster, or unset KAFKA_BROKERS to use the local one`,
      );
    }
    kafka = await startKafka({
      dataDir: dir,
      serviceDir: kafkaServiceDir(),
      port,
      version,
      upgrade: options.upgradeKafka,
      logger,
      probe: () => probeKafka(config.brokers),
    });
  }
  const postgres = await startPostgres({ dataDir: dir, databaseUrl: config.databaseUrl, logger });
  return { kafka, postgres };
}

/** Stops the local services this project started; returns which were running. */
export async function servicesDown(): Promise<{ kafka: boolean; postgres: boolean }> {
  const dir = dataDir();
  const kafka = await stopKafka(dir);
  const postgres = await stopPostgres(dir);
  return { kafka, postgres };
}

/** What runs where. */
export interface ServicesStatus {
  /**
   * Kafka reachability, the local broker's pid and version (as it logged it), and the version
   * `services up` selects.
   */
  kafka: {
    brokers: string[];
    reachable: boolean;
    localPid?: number;
    version?: string;
    selected: KafkaVersion;
  };
  /** PostgreSQL reachability and local server pid. */
  postgres: { url: string; reachable: boolean; error?: string; localPid?: number };
}

/** Reports whether each service is reachable and whether the local one runs. */
export async function servicesStatus(
  config: BaseConfig,
  options: { kafkaVersion?: KafkaVersion } = {},
): Promise<ServicesStatus> {
  const dir = dataDir();
  const pgErr = await probeDatabase(config.databaseUrl);
  return {
    kafka: {
      brokers: config.brokers,
      reachable: await probeKafka(config.brokers),
      localPid: await kafkaPid(dir),
      version: await localKafkaVersion(dir),
      selected: options.kafkaVersion ?? DEFAULT_KAFKA_VERSION,
    },
    postgres: {
      url: redact(config.databaseUrl),
      reachable: pgErr === undefined,
      error: pgErr === undefined ? undefined : redact(pgErr),
      localPid: await postgresPid(dir),
    },
  };
}
