/**
 * The brokers a Kafka cluster advertises, asked of its bootstrap servers with one Metadata
 * request (v6, no topics) over plain TCP: no client library, so that the launcher's probe is a
 * small process that may reach only the bootstrap list (`deno run --allow-net=<bootstrap>
 * common/kafka_metadata.ts <bootstrap>` prints `{"brokers":["host:port",...]}`).
 *
 * Kafka clients connect to the advertised listeners after bootstrapping (a TCP proxy in front of
 * a broker advertises the broker's own address), so these are the addresses a Kafka client must
 * also be allowed to reach. A cluster behind TLS or SASL (KAFKA_SECURITY_PROTOCOL) is asked
 * through kafkajs instead (`--secure`), with the same settings as the commands.
 * @module
 */

import { KAFKA_SECURITY_ENV, type KafkaSecurity, securityFiles } from "./kafka_security.ts";

/** Kafka's Metadata API key. */
const METADATA = 3;
/** The Metadata version asked for: v6 is what kafkajs 2.2.4 negotiates with Kafka 3.x and 4.x. */
const VERSION = 6;

/** One broker of a Metadata response. */
export interface AdvertisedBroker {
  /** Broker id. */
  nodeId: number;
  /** Advertised host. */
  host: string;
  /** Advertised port. */
  port: number;
}

/** Raised when a Metadata response cannot be read, or no bootstrap server answered. */
export class KafkaMetadataError extends Error {
  /** Creates the error; the message names the bad value or the servers tried. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaMetadataError";
  }
}

const enc = new TextEncoder();

/** The bytes of a Metadata v6 request for no topic (size prefix included). Pure. */
export function encodeMetadataRequest(
  correlationId: number,
  clientId = "tickpipe-probe",
): Uint8Array {
  const id = enc.encode(clientId);
  const body = 2 + 2 + 4 + 2 + id.length + 4 + 1;
  const out = new Uint8Array(4 + body);
  const v = new DataView(out.buffer);
  v.setInt32(0, body);
  v.setInt16(4, METADATA);
  v.setInt16(6, VERSION);
  v.setInt32(8, correlationId);
  v.setInt16(12, id.length);
  out.set(id, 14);
  let o = 14 + id.length;
  v.setInt32(o, 0); // topics: an empty array (none), not null (all)
  o += 4;
  v.setInt8(o, 0); // allow_auto_topic_creation: false
  return out;
}

/**
 * Reads the brokers of a Metadata v6 response body (after the size prefix) answering
 * `correlationId`. Pure; throws KafkaMetadataError naming what is wrong.
 */
export function decodeMetadataBrokers(
  body: Uint8Array,
  correlationId: number,
): AdvertisedBroker[] {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const dec = new TextDecoder("utf-8", { fatal: true });
  let o = 0;
  const need = (n: number, what: string) => {
    if (o + n > body.length) {
      throw new KafkaMetadataError(
        `Metadata response of ${body.length} bytes is truncated at ${what} (offset ${o})`,
      );
    }
  };
  const int32 = (what: string) => {
    need(4, what);
    const x = v.getInt32(o);
    o += 4;
    return x;
  };
  const string = (what: string, nullable = false): string | null => {
    need(2, what);
    const len = v.getInt16(o);
    o += 2;
    if (len < 0) {
      if (nullable) return null;
      throw new KafkaMetadataError(`Metadata response has a null ${what}`);
    }
    need(len, what);
    const s = dec.decode(body.subarray(o, o + len));
    o += len;
    return s;
  };
  const corr = int32("correlation id");
  if (corr !== correlationId) {
    throw new KafkaMetadataError(
      `Metadata response answers request ${corr}, expected ${correlationId}`,
    );
  }
  int32("throttle time");
  const count = int32("broker count");
  if (count < 0 || count > 100_000) {
    throw new KafkaMetadataError(`Metadata response has ${count} brokers`);
  }
  const brokers: AdvertisedBroker[] = [];
  for (let i = 0; i < count; i++) {
    const nodeId = int32("node id");
    const host = string("host")!;
    const port = int32("port");
    string("rack", true);
    if (host === "" || port < 1 || port > 65535) {
      throw new KafkaMetadataError(
        `Metadata response advertises broker ${nodeId} at "${host}:${port}"`,
      );
    }
    brokers.push({ nodeId, host, port });
  }
  return brokers;
}

/** `host:port` of an advertised broker, with IPv6 hosts in brackets (as --allow-net takes them). */
export function brokerAddress(b: { host: string; port: number }): string {
  return b.host.includes(":") ? `[${b.host}]:${b.port}` : `${b.host}:${b.port}`;
}

function splitHostPort(address: string): { hostname: string; port: number } {
  const i = address.lastIndexOf(":");
  return {
    hostname: address.slice(0, i).replace(/^\[(.*)\]$/, "$1"),
    port: Number(address.slice(i + 1)),
  };
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new KafkaMetadataError(`Connection closed after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

/** Asks one bootstrap server for the advertised brokers (I/O). */
async function askOne(address: string, timeoutMs: number): Promise<AdvertisedBroker[]> {
  const { hostname, port } = splitHostPort(address);
  const conn = await Deno.connect({ hostname, port, signal: AbortSignal.timeout(timeoutMs) });
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    const correlationId = 1 + Math.floor(Math.random() * 1_000_000);
    const req = encodeMetadataRequest(correlationId);
    for (let off = 0; off < req.length;) off += await conn.write(req.subarray(off));
    const size = new DataView((await readExactly(conn, 4)).buffer).getInt32(0);
    if (size < 8 || size > 16 * 1024 * 1024) {
      throw new KafkaMetadataError(`${address} answered with a ${size}-byte frame: not Kafka?`);
    }
    return decodeMetadataBrokers(await readExactly(conn, size), correlationId);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * Asks the bootstrap servers, one after the other until one answers, for the brokers the
 * cluster advertises; returns their `host:port` (I/O: needs net access to `bootstrap`).
 */
export async function fetchAdvertisedBrokers(
  bootstrap: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<string[]> {
  const errors: string[] = [];
  for (const address of bootstrap) {
    try {
      const brokers = await askOne(address, options.timeoutMs ?? 2000);
      return [...new Set(brokers.map(brokerAddress))];
    } catch (e) {
      errors.push(`${address}: ${(e as Error)?.message ?? e}`);
    }
  }
  throw new KafkaMetadataError(
    `No bootstrap server answered a metadata request (${errors.join("; ")})`,
  );
}

/** Options for {@linkcode probeAdvertisedBrokers}. */
export interface ProbeOptions {
  /** The deno executable (default "deno" on PATH: the launcher may run only that). */
  deno?: string;
  /** Give up after this long (default 5000 ms; the launcher gives a TLS or SASL probe 15 s). */
  timeoutMs?: number;
  /**
   * The cluster's TLS and SASL settings (default: plain TCP). With any, the probe is a kafkajs
   * admin client (the project's own, with the project's configuration) that may also read the
   * security variables and the CA file; the password reaches it in the inherited environment.
   */
  security?: KafkaSecurity;
}

/** Asks the bootstrap servers through kafkajs with this process' TLS and SASL settings (I/O). */
async function fetchSecurely(bootstrap: string[]): Promise<string[]> {
  const { createKafka, kafkaError } = await import("./kafka.ts");
  const { createLogger } = await import("./log.ts");
  const kafka = createKafka(bootstrap, {
    clientId: "tickpipe-probe",
    retries: 1,
    logger: createLogger("probe", { level: "error" }),
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const { brokers } = await admin.describeCluster();
    return [...new Set(brokers.map(brokerAddress))];
  } catch (e) {
    throw kafkaError(e, bootstrap);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Learns the brokers the cluster advertises in a short-lived child process that may reach only
 * `bootstrap` (`deno run --allow-net=<bootstrap>` of this module), for a process that has no
 * network access itself (the launcher). Resolves to null when no bootstrap server answered.
 */
export async function probeAdvertisedBrokers(
  bootstrap: readonly string[],
  options: ProbeOptions = {},
): Promise<string[] | null> {
  const self = decodeURIComponent(new URL(import.meta.url).pathname);
  const security = options.security;
  const secure = security !== undefined && security.protocol !== "PLAINTEXT";
  const config = decodeURIComponent(new URL("../deno.json", import.meta.url).pathname);
  const child = new Deno.Command(options.deno ?? "deno", {
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      ...(secure
        ? [
          `--config=${config}`,
          `--allow-env=${KAFKA_SECURITY_ENV.join(",")}`,
          ...(securityFiles(security).length > 0
            ? [`--allow-read=${securityFiles(security).join(",")}`]
            : []),
        ]
        : ["--no-config"]),
      `--allow-net=${bootstrap.join(",")}`,
      self,
      bootstrap.join(","),
      ...(secure ? ["--secure"] : []),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, options.timeoutMs ?? 5000);
  try {
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
    const parsed = JSON.parse(text) as { brokers?: unknown };
    if (!out.success || !Array.isArray(parsed.brokers)) return null;
    return parsed.brokers.filter((b): b is string => typeof b === "string");
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

if (import.meta.main) {
  // The launcher's probe: `deno run --allow-net=<bootstrap> kafka_metadata.ts <a:1,b:2>`.
  const bootstrap = (Deno.args[0] ?? "").split(",").filter((s) => s !== "");
  try {
    const brokers = Deno.args[1] === "--secure"
      ? await fetchSecurely(bootstrap)
      : await fetchAdvertisedBrokers(bootstrap);
    console.log(JSON.stringify({ brokers }));
  } catch (e) {
    console.log(JSON.stringify({ error: (e as Error)?.message ?? String(e) }));
    Deno.exit(1);
  }
}
