/**
 * What each command may reach, derived from its resolved configuration (flags > environment >
 * defaults): the Kafka bootstrap servers and the brokers the cluster advertises, the PostgreSQL
 * host:port of DATABASE_URL, the WebSocket source, the address the simulator listens on, the
 * Deno KV folder, the spool and recording paths. Pure: configuration in, `--allow-net`,
 * `--allow-read` and `--allow-write` flags out; the permission set of deno.json keeps the rest
 * (env names, sys, run). The launcher (`deno task <command>`), `start`/`demo` for their children,
 * the sensor for its aggregator and `compile` all use {@linkcode launchFlags}, and main.ts checks
 * the same list before a command runs ({@linkcode checkAccess}): a denied address or path is a
 * configuration error (exit 2) with one message naming it and the fix, never a network outage.
 * @module
 */

import { parseFlags } from "./cli.ts";
import {
  type BaseSettingName,
  ConfigError,
  parseBrokers,
  type ResolvedSetting,
  resolveSetting,
} from "./config.ts";
import { redact } from "./log.ts";
import { errorChain } from "./error_chain.ts";
import { parseKafkaSecurity } from "./kafka_security.ts";
import { hostPort } from "./metrics_flags.ts";
import { parseArgsConfig, type RawValues, resolveOptions } from "./options.ts";
import { SIMULATOR_LISTEN, spoolDirOf } from "../ingest/options.ts";
import { COMMAND_OPTIONS } from "../pipeline/options.ts";

/** A kind of permission the launcher derives (the others stay those of the permission set). */
export type PermissionKind = "net" | "read" | "write";

/** A kind of permission a denial can be about (env, run and sys come from the set only). */
export type DeniedKind = PermissionKind | "env" | "run" | "sys";

/** One address or path a command needs, with the setting it comes from (for messages). */
export interface AccessNeed {
  /** Permission kind (the launcher derives net, read and write; the others are the set's). */
  kind: DeniedKind;
  /** `host:port` (net) or a path (read, write). */
  target: string;
  /** What it is, e.g. `Kafka`, `PostgreSQL`, `WebSocket source`, `Deno KV folder`. */
  what: string;
  /** The setting it comes from, with its value as shown (redacted), e.g. `--kv /tmp/x.kv`. */
  setting: string;
  /** The settings that change it, for the fix, e.g. `KAFKA_BROKERS / --brokers`. */
  settings: string;
  /** The fix, when not the usual one (run it through its `deno task`). */
  fix?: string;
}

/** Environment lookup (undefined when unset). */
export type EnvLookup = (name: string) => string | undefined;

/** Options for {@linkcode commandAccess}. */
export interface AccessOptions {
  /** Environment (default: none). */
  env?: EnvLookup;
  /**
   * The brokers the Kafka cluster advertises (learned by the launcher's metadata probe); default:
   * TICKPIPE_KAFKA_HOSTS from `env`.
   */
  kafkaHosts?: readonly string[];
  /** Absolute project root with a trailing slash (for `sql/`); default: this project's. */
  root?: string;
}

/** What a command reaches; `probesKafka`: the launcher learns the advertised brokers for it. */
interface CommandResources {
  resources: Resource[];
  probesKafka?: boolean;
}

type Resource =
  | "kafka"
  | "database"
  | "source"
  | "listen"
  | "kv"
  | "sql"
  | "spool"
  | "record"
  | "data"
  | "outDir"
  | "metrics"
  | "treeMetrics"
  | "dashboard"
  | "webAssets"
  | "localServices";

/** Where the simulator listens by default (ingest/simulator.ts; a unit test keeps them equal). */
export const SIMULATOR_DEFAULT = SIMULATOR_LISTEN;

/**
 * The resources of each command. `start` reaches nothing itself but its metrics and dashboard
 * addresses (its children get their own lists: the dashboard child reads Kafka, PostgreSQL and
 * KV, `start` only checks that its address is free); `compile` bakes the aggregator's and the
 * sensor's lists into the binaries.
 */
const COMMANDS: Record<string, CommandResources> = {
  services: { resources: ["kafka", "database", "localServices"], probesKafka: true },
  migrate: { resources: ["database", "sql"] },
  ingest: { resources: ["kafka", "source", "spool", "record", "metrics"], probesKafka: true },
  simulate: { resources: ["listen"] },
  aggregate: { resources: ["kafka", "database", "kv", "sql", "metrics"], probesKafka: true },
  sensor: { resources: ["kafka", "kv", "metrics"], probesKafka: true },
  offsets: { resources: ["kafka", "kv"], probesKafka: true },
  status: { resources: ["kafka", "database", "kv"], probesKafka: true },
  start: { resources: ["treeMetrics", "dashboard"], probesKafka: true },
  demo: { resources: ["kafka", "database", "kv", "data", "dashboard"], probesKafka: true },
  dashboard: {
    resources: ["kafka", "database", "kv", "dashboard", "webAssets"],
    probesKafka: true,
  },
  compile: { resources: ["outDir"], probesKafka: true },
};

/** True when `command` has derived permissions (else the launcher runs it with its set only). */
export function hasDerivedAccess(command: string): boolean {
  return Object.hasOwn(COMMANDS, command);
}

/** True when the launcher should learn the advertised Kafka brokers for `command`. */
export function probesKafka(command: string): boolean {
  return COMMANDS[command]?.probesKafka === true;
}

/** The project root (absolute, trailing slash), from this module's location. */
function projectRoot(): string {
  return decodeURIComponent(new URL("../", import.meta.url).pathname);
}

function hostPortOf(url: URL, defaultPort: number): string {
  // URL.hostname keeps IPv6 brackets, as --allow-net wants them.
  return `${url.hostname}:${url.port === "" ? defaultPort : url.port}`;
}

/** The folder of `path` (`.` for a bare name). */
function folderOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** `--flag value` or `NAME=value`, as a message shows a setting. */
function shown(name: string, value: string): string {
  return name.startsWith("--") ? `${name} ${value}` : `${name}=${value}`;
}

/**
 * A command line parsed with the command's own table (common/options.ts, pipeline/options.ts):
 * strictly, as the command will parse it, every value validated and every default applied in the
 * one place they are applied. An unknown flag or a bad value is the command's own ConfigError.
 */
function commandLine(command: string, args: readonly string[], env: EnvLookup) {
  const table = COMMAND_OPTIONS[command] ?? {};
  const { values } = parseFlags([...args], parseArgsConfig(table));
  const given = values as RawValues;
  const options = resolveOptions(table, given) as Record<string, unknown>;
  /** A shared setting (flag > environment > default), resolved as the command resolves it. */
  const base = <N extends BaseSettingName>(name: N) => resolveSetting(given, name, { env });
  return { given, options, base };
}

/** Parses a TICKPIPE_KAFKA_HOSTS value (same syntax as KAFKA_BROKERS). */
export function parseKafkaHosts(value: string): string[] {
  return parseBrokers(value, "TICKPIPE_KAFKA_HOSTS");
}

/**
 * The Kafka bootstrap servers `command` run with `args` and `env` uses (flags > env > default),
 * from its command line parsed as the command parses it. Pure.
 */
export function configuredBrokers(
  command: string,
  args: readonly string[],
  options: AccessOptions = {},
): string[] {
  return commandLine(command, args, options.env ?? (() => undefined)).base("brokers").value;
}

/**
 * Everything `command` run with `args` needs to reach, resolved like the command resolves its
 * configuration (flags > environment > defaults). Throws ConfigError for a bad value, with the
 * command's own wording. Pure.
 */
export function commandAccess(
  command: string,
  args: readonly string[],
  options: AccessOptions = {},
): AccessNeed[] {
  const spec = COMMANDS[command];
  if (spec === undefined) return [];
  const env: EnvLookup = options.env ?? (() => undefined);
  const { given, options: o, base } = commandLine(command, args, env);
  const needs: AccessNeed[] = [];
  const add = (need: AccessNeed) => {
    if (need.target.includes(",")) {
      throw new ConfigError(
        `${need.setting} contains a comma, which a permission list cannot hold: rename the path`,
      );
    }
    if (!needs.some((n) => n.kind === need.kind && n.target === need.target)) needs.push(need);
  };
  const settingText = (s: ResolvedSetting<unknown>, value = s.raw) => shown(s.source, value);
  /** A flag as given, or its default as the table applies it, for messages. */
  const flagText = (name: string) => `--${name} ${given[name] ?? String(o[name])}`;
  for (const resource of spec.resources) {
    switch (resource) {
      case "kafka": {
        const b = base("brokers");
        for (const target of b.value) {
          add({
            kind: "net",
            target,
            what: "Kafka",
            setting: settingText(b, b.value.join(",")),
            settings: "KAFKA_BROKERS / --brokers",
          });
        }
        // TLS and SASL come from the environment only; their files must be readable.
        const security = parseKafkaSecurity(env);
        const files: [string | undefined, string, string][] = [
          [security.caFile, "Kafka CA file", "KAFKA_SSL_CA_FILE"],
          [security.clientCert?.certFile, "Kafka client certificate", "KAFKA_SSL_CERT_FILE"],
          [security.clientCert?.keyFile, "Kafka client key", "KAFKA_SSL_KEY_FILE"],
        ];
        for (const [target, what, variable] of files) {
          if (target === undefined) continue;
          add({ kind: "read", target, what, setting: `${variable}=${target}`, settings: variable });
        }
        const raw = env("TICKPIPE_KAFKA_HOSTS");
        const hosts = options.kafkaHosts ?? (raw === undefined ? [] : parseKafkaHosts(raw));
        for (const target of hosts) {
          add({
            kind: "net",
            target,
            what: "Kafka broker",
            setting: `advertised by the cluster: TICKPIPE_KAFKA_HOSTS=${hosts.join(",")}`,
            settings: "TICKPIPE_KAFKA_HOSTS",
          });
        }
        break;
      }
      case "database": {
        const d = base("database-url");
        const url = new URL(d.value);
        // node-postgres: the URL's port, else PGPORT, else 5432.
        const port = Number(env("PGPORT")) > 0 ? Number(env("PGPORT")) : 5432;
        add({
          kind: "net",
          target: hostPortOf(url, port),
          what: "PostgreSQL",
          setting: settingText(d, redact(d.raw)),
          settings: "DATABASE_URL / --database-url",
        });
        // TLS files named in the URL: node-postgres reads them when it connects.
        for (const param of ["sslrootcert", "sslcert", "sslkey"]) {
          const file = url.searchParams.get(param);
          if (file === null || file === "") continue;
          add({
            kind: "read",
            target: file,
            what: `PostgreSQL TLS file (${param})`,
            setting: `${d.source} ${param}=${file}`,
            settings: "DATABASE_URL / --database-url",
          });
        }
        break;
      }
      case "source": {
        // Validated by ingest's table (a ws:// or wss:// URL).
        const source = o.source as string;
        const url = new URL(source);
        add({
          kind: "net",
          target: hostPortOf(url, url.protocol === "wss:" ? 443 : 80),
          what: "WebSocket source",
          setting: `--source ${source}`,
          settings: "--source",
        });
        break;
      }
      case "listen": {
        const hostname = o.hostname as string;
        const port = o.port as number;
        const host = hostname.includes(":") && !hostname.startsWith("[")
          ? `[${hostname}]`
          : hostname;
        add({
          kind: "net",
          // Port 0 (ephemeral) is only known once bound: the host, any port.
          target: port === 0 ? host : `${host}:${port}`,
          what: "listening address",
          setting: `--hostname ${hostname} --port ${given.port ?? port}`,
          settings: "--hostname / --port",
        });
        break;
      }
      case "kv": {
        const k = base("kv");
        const folder = folderOf(k.value);
        const kvSetting = settingText(k);
        const settings = "TICKPIPE_KV / --kv";
        if (folder === "." || folder === "/") {
          // A KV in the working (or root) directory: the file and the aggregator's lock beside
          // it, not the whole directory (SQLite's own -wal/-shm files need no Deno permission).
          const lock = `${k.value}.aggregate-${encodeURIComponent(base("topic").value)}.lock`;
          for (const target of [k.value, lock]) {
            for (const kind of ["read", "write"] as const) {
              add({ kind, target, what: "Deno KV file", setting: kvSetting, settings });
            }
          }
        } else {
          // The KV's folder: created on first use, and it holds SQLite's side files and the
          // aggregator's lock files.
          for (const kind of ["read", "write"] as const) {
            add({ kind, target: folder, what: "Deno KV folder", setting: kvSetting, settings });
          }
        }
        break;
      }
      case "sql":
        add({
          kind: "read",
          target: `${options.root ?? projectRoot()}sql`,
          what: "migrations folder",
          setting: "sql/",
          settings: "the project's sql/ folder",
        });
        break;
      case "spool": {
        const dir = spoolDirOf(o["spool-dir"] as string | undefined, base("topic").value);
        for (const kind of ["read", "write"] as const) {
          add({
            kind,
            target: dir,
            what: "spool directory",
            setting: `--spool-dir ${dir}`,
            settings: "--spool-dir",
          });
        }
        break;
      }
      case "record": {
        const r = o.record;
        if (typeof r === "string" && r !== "") {
          // Its folder, which ingest creates when missing; a file in the working (or root)
          // directory: the file only.
          const folder = folderOf(r);
          add({
            kind: "write",
            target: folder === "." || folder === "/" ? r : folder,
            what: "recording folder",
            setting: `--record ${r}`,
            settings: "--record",
          });
        }
        break;
      }
      case "data":
        for (const kind of ["read", "write"] as const) {
          add({
            kind,
            target: ".data",
            what: "data folder",
            setting: ".data/",
            settings: "the project's .data/ folder",
          });
        }
        break;
      case "metrics": {
        // Only when asked for: --metrics-port (no default; the host defaults to loopback).
        const port = o["metrics-port"] as number | undefined;
        if (port === undefined) break;
        add({
          kind: "net",
          target: hostPort(o["metrics-host"] as string, port),
          what: "metrics address",
          setting: flagText("metrics-port"),
          settings: "--metrics-host / --metrics-port",
        });
        break;
      }
      case "treeMetrics": {
        // start serves the tree's metrics on P (default 9490; 0 = none) and reads its
        // children's endpoints on 127.0.0.1, P+1..P+3 (pipeline/options.ts).
        const port = o["metrics-port"] as number;
        if (port === 0) break;
        const settings = "--metrics-host / --metrics-port";
        add({
          kind: "net",
          target: hostPort(o["metrics-host"] as string, port),
          what: "metrics address",
          setting: flagText("metrics-port"),
          settings,
        });
        for (let i = 1; i <= 3; i++) {
          add({
            kind: "net",
            target: hostPort("127.0.0.1", port + i),
            what: "child metrics endpoint",
            setting: `${flagText("metrics-port")} (children on P+1..P+3)`,
            settings,
          });
        }
        break;
      }
      case "dashboard": {
        // The web dashboard's address (default 127.0.0.1:8080; port 0 = none), as its table
        // parses it (common/dashboard_flags.ts). start and demo only check it is free before
        // their dashboard child binds it.
        const port = o["dashboard-port"] as number;
        if (port === 0) break;
        add({
          kind: "net",
          target: hostPort(o["dashboard-host"] as string, port),
          what: "dashboard address",
          setting: flagText("dashboard-port"),
          settings: "--dashboard-host / --dashboard-port",
        });
        break;
      }
      case "webAssets":
        add({
          kind: "read",
          target: `${options.root ?? projectRoot()}pipeline/web`,
          what: "dashboard page folder",
          setting: "pipeline/web/",
          settings: "the project's pipeline/web/ folder",
        });
        break;
      case "localServices":
        // What the services command reads to run the local broker and cluster (the project, the
        // server's binaries and configuration): its set's own list, kept when a TLS file adds a
        // read need (a derived list replaces the set's).
        for (
          const [target, what] of [
            [(options.root ?? projectRoot()).replace(/\/$/, ""), "project folder"],
            ["/usr/lib/postgresql", "PostgreSQL's binaries"],
            ["/etc/postgresql-common", "PostgreSQL's cluster configuration"],
            ["/var/tmp", "temporary folder"],
          ]
        ) {
          add({ kind: "read", target, what, setting: target, settings: "the local services" });
        }
        break;
      case "outDir": {
        const out = o["out-dir"] as string;
        add({
          kind: "write",
          target: out.replace(/(.)\/+$/, "$1"),
          what: "output folder",
          setting: `--out-dir ${out}`,
          settings: "--out-dir",
        });
        break;
      }
    }
  }
  return needs;
}

/**
 * The `deno run` flags granting exactly `needs`: one `--allow-<kind>=a,b` per kind present.
 * A kind with no need gets no flag, so the permission set's own list applies to it. Pure.
 */
export function permissionFlags(needs: readonly AccessNeed[]): string[] {
  const flags: string[] = [];
  for (const kind of ["net", "read", "write"] as const) {
    const targets = [...new Set(needs.filter((n) => n.kind === kind).map((n) => n.target))];
    if (targets.length > 0) flags.push(`--allow-${kind}=${targets.join(",")}`);
  }
  return flags;
}

/** The permission flags for `command` run with `args` (see {@linkcode commandAccess}). Pure. */
export function launchFlags(
  command: string,
  args: readonly string[],
  options: AccessOptions = {},
): string[] {
  return permissionFlags(commandAccess(command, args, options));
}

/** A permission query (default: Deno.permissions.querySync). */
export type PermissionQuery = (need: { kind: DeniedKind; target: string }) => boolean;

function querySync(need: { kind: DeniedKind; target: string }): boolean {
  const d: Deno.PermissionDescriptor = need.kind === "net"
    ? { name: "net", host: need.target }
    : need.kind === "env"
    ? { name: "env", variable: need.target }
    : need.kind === "run"
    ? { name: "run", command: need.target }
    : need.kind === "sys"
    ? { name: "sys", kind: need.target as Deno.SysPermissionDescriptor["kind"] }
    : { name: need.kind, path: need.target };
  return Deno.permissions.querySync(d).state === "granted";
}

/** The first of `needs` this process may not use, or null (I/O only through `options.query`). */
export function firstDenied(
  needs: readonly AccessNeed[],
  options: { query?: PermissionQuery } = {},
): AccessNeed | null {
  const query = options.query ?? querySync;
  for (const need of needs) if (!query(need)) return need;
  return null;
}

let currentCommand: string | undefined;

/** Names the running command for the fixes messages suggest (main.ts sets it). */
export function setCommandName(name: string): void {
  currentCommand = name;
}

/** Options of the messages of {@linkcode AccessDeniedError}. */
export interface DeniedMessageOptions {
  /** The command (default: the one main.ts runs). */
  command?: string;
  /** A `deno compile`d binary, whose permissions were baked in at build time. */
  standalone?: boolean;
}

function fixText(need: AccessNeed, options: DeniedMessageOptions): string {
  const command = options.command ?? currentCommand ?? "<command>";
  const standalone = options.standalone ?? (Deno.build.standalone ?? false);
  if (standalone) {
    return `this binary's permissions were derived from the configuration it was built with: ` +
      `rebuild it with "deno task compile" under this configuration (${need.settings})`;
  }
  return need.fix ??
    `run it through "deno task ${command}", which allows exactly the configured addresses and ` +
      `paths (${need.settings}), or change ${need.settings}`;
}

/** The one message for a denied need: what, where, the setting, and the fix. Pure. */
export function deniedMessage(need: AccessNeed, options: DeniedMessageOptions = {}): string {
  const list = {
    net: "allowed hosts",
    read: "allowed read paths",
    write: "allowed write paths",
    env: "allowed environment variables",
    run: "allowed programs",
    sys: "allowed system information",
  }[need.kind];
  return `${need.what} ${need.kind === "net" ? "at " : ""}${need.target} (${need.setting}) ` +
    `is not in this command's ${list}: ${fixText(need, options)}`;
}

/**
 * A denied permission: a configuration error (exit 2), never retried as a network outage. The
 * message names the address or path, the setting it comes from, and the fix.
 */
export class AccessDeniedError extends ConfigError {
  /** What was denied. */
  readonly need: AccessNeed;
  /** Creates the error for `need`. */
  constructor(need: AccessNeed, options: DeniedMessageOptions & ErrorOptions = {}) {
    super(deniedMessage(need, options));
    if (options.cause !== undefined) this.cause = options.cause;
    this.name = "AccessDeniedError";
    this.need = need;
  }
}

/**
 * Reports a denial the way main.ts reports a configuration error (one line) and exits 2: for
 * short-lived commands that have nothing to flush (status, offsets), as soon as it happens.
 */
export function exitDenied(error: Error): never {
  console.error(`tickpipe ${currentCommand ?? "<command>"}: ${redact(error.message)}`);
  Deno.exit(2);
}

/** Throws AccessDeniedError for the first of `needs` this process may not use. */
export function checkAccess(
  needs: readonly AccessNeed[],
  options: { query?: PermissionQuery } & DeniedMessageOptions = {},
): void {
  const denied = firstDenied(needs, options);
  if (denied !== null) throw new AccessDeniedError(denied, options);
}

/** True when `e` (or an error it wraps, as kafkajs does) is Deno's permission denial. */
export function isPermissionError(e: unknown): boolean {
  if (e instanceof AccessDeniedError) return true;
  for (const cur of errorChain(e)) {
    if (
      cur.name === "NotCapable" || cur.name === "AccessDeniedError" ||
      /Requires (net|read|write|env|run|sys|ffi|import) access/.test(String(cur.message ?? ""))
    ) return true;
  }
  return /Requires (net|read|write|env|run|sys) access to/.test(String((e as Error)?.message ?? e));
}

/** The kind and target of Deno's denial message in `e` (`Requires net access to "h:p"`), if any. */
export function deniedTarget(e: unknown): { kind: string; target: string } | null {
  for (const cur of errorChain(e)) {
    const m = /Requires (\w+) access to "([^"]*)"/.exec(String(cur.message ?? ""));
    if (m) return { kind: m[1], target: m[2] };
  }
  const m = /Requires (\w+) access to "([^"]*)"/.exec(String((e as Error)?.message ?? e));
  return m ? { kind: m[1], target: m[2] } : null;
}

/**
 * The AccessDeniedError for Kafka at `address` (from `brokers`, else a broker the cluster
 * advertised after bootstrapping). Pure.
 */
export function kafkaDenied(
  address: string,
  brokers: readonly string[],
  options: DeniedMessageOptions & ErrorOptions = {},
): AccessDeniedError {
  if (brokers.includes(address)) {
    return new AccessDeniedError({
      kind: "net",
      target: address,
      what: "Kafka",
      setting: `KAFKA_BROKERS=${brokers.join(",")}`,
      settings: "KAFKA_BROKERS / --brokers",
    }, options);
  }
  const command = options.command ?? currentCommand ?? "<command>";
  return new AccessDeniedError({
    kind: "net",
    target: address,
    what: "Kafka broker",
    setting: `advertised by the cluster at KAFKA_BROKERS=${brokers.join(",")}`,
    settings: "TICKPIPE_KAFKA_HOSTS",
    fix: `run it through "deno task ${command}" while Kafka is reachable (its launcher then ` +
      `learns the brokers the cluster advertises), or set TICKPIPE_KAFKA_HOSTS=${address}`,
  }, options);
}

/**
 * Turns a raw permission denial into an AccessDeniedError naming what was denied (for errors no
 * part classified itself), with the setting of the matching one of `needs` when there is one.
 * Returns null when `e` is not a denial.
 */
export function accessDeniedOf(
  e: unknown,
  options: DeniedMessageOptions & { needs?: readonly AccessNeed[] } = {},
): AccessDeniedError | null {
  if (e instanceof AccessDeniedError) return e;
  if (!isPermissionError(e)) return null;
  const t = deniedTarget(e);
  // One of the command's configured addresses or paths: name its setting.
  const need = t === null
    ? undefined
    : options.needs?.find((n) =>
      n.target === t.target && (n.kind === t.kind || (n.kind !== "net" && t.kind !== "net"))
    );
  if (need !== undefined) return new AccessDeniedError(need, { ...options, cause: e });
  const denied = String((e as Error)?.message ?? e).split("\n")[0].replace(/, run again.*$/, "");
  if (t !== null && t.kind !== "net" && t.kind !== "read" && t.kind !== "write") {
    // env, run, sys...: the permission set's own lists, which no configuration changes.
    const command = options.command ?? currentCommand ?? "<command>";
    const kind = t.kind === "env" || t.kind === "run" ? t.kind : "sys";
    return new AccessDeniedError({
      kind,
      target: t.target,
      what: { env: "Environment variable", run: "Program", sys: "System information" }[kind],
      setting: denied,
      settings: `the "${command}" permission set`,
      fix: `the "${command}" permission set in deno.json does not list it, and no setting ` +
        `changes that: a tickpipe bug, please report it`,
    }, { ...options, cause: e });
  }
  const kind = (t?.kind === "read" || t?.kind === "write") ? t.kind : "net";
  return new AccessDeniedError({
    kind,
    target: t?.target ?? "?",
    what: kind === "net" ? "The address" : "The path",
    setting: denied,
    settings: "its flags and environment",
  }, { ...options, cause: e });
}
