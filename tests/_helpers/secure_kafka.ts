/**
 * A real Kafka broker with a SASL_SSL listener, for the tests of secured clients: its own KRaft
 * data folder under `.data/secure-kafka`, a CA and a server certificate made with openssl (SAN
 * 127.0.0.1 and localhost), PLAIN and SCRAM-SHA-256 users, an SSL listener that requires a client
 * certificate signed by the CA (mutual TLS), and a PLAINTEXT listener beside them for the broker's
 * own traffic. Started once per test process, stopped by {@linkcode stopSecureKafka}.
 * @module
 */

import { createLogger } from "../../common/log.ts";
import {
  type ClientCertificate,
  makeClientCertificate,
  makeTestCertificates,
  run,
  toolsUnavailable,
} from "./test_certs.ts";
import { DEFAULT_KAFKA_VERSION, ensureKafkaJars, parseKafkaVersion } from "../../services/kafka.ts";
import {
  killPid,
  pidAlive,
  portOpen,
  spawnDetached,
  tail,
  waitFor,
} from "../../services/_process.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const DIR = `${ROOT}.data/secure-kafka`;

/**
 * The SASL_SSL port; the broker's own PLAINTEXT and CONTROLLER listeners use the next two, the
 * mutual-TLS listener the one after.
 */
export const SECURE_PORT = 29093;
/** The SASL_SSL bootstrap address. */
export const SECURE_BROKER = `127.0.0.1:${SECURE_PORT}`;
/** The broker's PLAINTEXT address (for the test's own admin client, no security). */
export const PLAIN_BROKER = `127.0.0.1:${SECURE_PORT + 1}`;
/** The SSL address that requires a client certificate signed by the test CA (mutual TLS). */
export const MTLS_BROKER = `127.0.0.1:${SECURE_PORT + 3}`;

/** The password of {@linkcode SecureKafka.client}'s encrypted key. */
export const CLIENT_KEY_PASSWORD = "key-Pw-5m8r";

/** The users the broker knows. */
export const USERS = {
  plain: { username: "alice", password: "alice-Pw-7f3k" },
  scram: { username: "bob", password: "bob-Pw-9q2z" },
} as const;

/** A running secured broker. */
export interface SecureKafka {
  /** PEM file of the CA that signed the broker's certificate. */
  caFile: string;
  /** PEM file of an unrelated CA (a certificate the client must refuse). */
  otherCaFile: string;
  /** A client certificate the CA signed; its key encrypted with {@linkcode CLIENT_KEY_PASSWORD}. */
  client: ClientCertificate;
  /** A client certificate the unrelated CA signed (the broker must refuse it). */
  otherClient: ClientCertificate;
}

/** Why the secured broker cannot be started here (no openssl or java), or null. */
export function secureKafkaUnavailable(): Promise<string | null> {
  return toolsUnavailable(["openssl", "version"], ["java", "-version"]);
}

function properties(data: string, options: { plainUser?: boolean } = {}): string {
  const p = SECURE_PORT;
  const plain = USERS.plain;
  return [
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${p + 2}`,
    `listeners=SASL_SSL://127.0.0.1:${p},PLAINTEXT://127.0.0.1:${p + 1},CONTROLLER://127.0.0.1:${
      p + 2
    },SSL://127.0.0.1:${p + 3}`,
    `advertised.listeners=SASL_SSL://127.0.0.1:${p},PLAINTEXT://127.0.0.1:${p + 1},` +
    `SSL://127.0.0.1:${p + 3}`,
    "controller.listener.names=CONTROLLER",
    "listener.security.protocol.map=" +
    "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL",
    "listener.name.ssl.ssl.client.auth=required",
    "ssl.truststore.type=PEM",
    `ssl.truststore.location=${DIR}/ca.pem`,
    "inter.broker.listener.name=PLAINTEXT",
    "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
    "listener.name.sasl_ssl.plain.sasl.jaas.config=" +
    "org.apache.kafka.common.security.plain.PlainLoginModule required " +
    (options.plainUser === false ? ";" : `user_${plain.username}="${plain.password}";`),
    "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=" +
    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    "ssl.keystore.type=PEM",
    `ssl.keystore.location=${DIR}/server.pem`,
    `log.dirs=${data}`,
    "num.partitions=3",
    "auto.create.topics.enable=false",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=3",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "group.initial.rebalance.delay.ms=0",
    "",
  ].join("\n");
}

let started: Promise<SecureKafka> | undefined;
let brokerPid: number | undefined;
let libDir: string | undefined;

/** Starts the secured broker (once per process; fresh data and certificates each time). */
export function ensureSecureKafka(): Promise<SecureKafka> {
  started ??= start();
  return started;
}

async function start(): Promise<SecureKafka> {
  await stopLeftover();
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${DIR}/data`, { recursive: true });
  const certs = await makeTestCertificates(DIR);
  // Kafka's PEM key store: the unencrypted PKCS#8 key and the certificate chain in one file.
  await Deno.writeTextFile(
    `${DIR}/server.pem`,
    await Deno.readTextFile(certs.keyFile) + await Deno.readTextFile(certs.certFile),
  );
  const files = {
    caFile: certs.caFile,
    otherCaFile: certs.otherCaFile,
    client: await makeClientCertificate(DIR, "client", {
      signer: "ca",
      cn: "tickpipe",
      keyPassword: CLIENT_KEY_PASSWORD,
    }),
    otherClient: await makeClientCertificate(DIR, "other-client", {
      signer: "other-ca",
      cn: "tickpipe",
    }),
  };
  const version = parseKafkaVersion(Deno.env.get("KAFKA_VERSION") ?? DEFAULT_KAFKA_VERSION);
  const lib = await ensureKafkaJars({
    dataDir: `${ROOT}.data`,
    serviceDir: `${ROOT}services/kafka`,
    version,
    logger: createLogger("secure-kafka", { level: "error" }),
  });
  libDir = lib;
  const props = `${DIR}/server.properties`;
  await Deno.writeTextFile(props, properties(`${DIR}/data`));
  const log4j = `${DIR}/log4j.properties`;
  await Deno.writeTextFile(log4j, "log4j.rootLogger=WARN\nrootLogger.level=WARN\n");
  const scram = USERS.scram;
  await run(DIR, "java", [
    ...["-cp", `${lib}/*`, "kafka.tools.StorageTool", "format", "-t", "c2VjdXJlLWthZmthLXRlc3Q"],
    ...[
      "-c",
      props,
      "--add-scram",
      `SCRAM-SHA-256=[name=${scram.username},password=${scram.password}]`,
    ],
  ]);
  await spawnBroker(lib, version);
  return files;
}

/** Starts the broker process on the prepared folder and waits for its listeners. */
async function spawnBroker(lib: string, version: string): Promise<void> {
  brokerPid = spawnDetached("java", [
    ...["-Xms128m", "-Xmx512m", "-Djava.awt.headless=true"],
    `-Dkafka.logs.dir=${DIR}`,
    ...["-cp", `${lib}/*`, "kafka.Kafka", `${DIR}/server.properties`],
  ], { cwd: DIR });
  await Deno.writeTextFile(`${DIR}/pid`, `${brokerPid}\n`);
  const up = await waitFor(async () => {
    if (!(await pidAlive(brokerPid!))) return false;
    return await portOpen("127.0.0.1", SECURE_PORT) &&
      await portOpen("127.0.0.1", SECURE_PORT + 1) && await portOpen("127.0.0.1", SECURE_PORT + 3);
  }, { timeoutMs: 90_000, intervalMs: 300 });
  if (!up) {
    throw new Error(
      `The secured Kafka ${version} did not come up on ${SECURE_BROKER}: ${await tail(
        `${DIR}/server.log`,
      )}`,
    );
  }
}

/**
 * Restarts the running broker (kill -9, then the same data), so that every client reconnects and
 * logs in again; with `plainUser: false` the PLAIN user is gone from its configuration (revoked),
 * with `true` it is back.
 */
export async function restartSecureKafka(options: { plainUser?: boolean } = {}): Promise<void> {
  if (brokerPid === undefined || libDir === undefined) throw new Error("No secured broker runs");
  await killPid(brokerPid, "KILL");
  await waitFor(async () => !(await portOpen("127.0.0.1", SECURE_PORT)), {
    timeoutMs: 10_000,
    intervalMs: 100,
  });
  await Deno.writeTextFile(`${DIR}/server.properties`, properties(`${DIR}/data`, options));
  await spawnBroker(
    libDir,
    parseKafkaVersion(Deno.env.get("KAFKA_VERSION") ?? DEFAULT_KAFKA_VERSION),
  );
}

async function stopLeftover(): Promise<void> {
  try {
    const pid = Number((await Deno.readTextFile(`${DIR}/pid`)).trim());
    if (pid > 0 && await pidAlive(pid)) await killPid(pid, "KILL");
  } catch { /* none */ }
}

/** Stops the secured broker (kill -9: its data is thrown away) and removes its folder. */
export async function stopSecureKafka(): Promise<void> {
  if (brokerPid !== undefined) await killPid(brokerPid, "KILL").catch(() => {});
  brokerPid = undefined;
  started = undefined;
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
}
