/**
 * `tickpipe launch <command> [flags]` (what `deno task <command>` runs): a thin launcher under a
 * tiny permission set (it may read the configuration's environment variables and run deno, no
 * more) that derives the command's allow-lists from its resolved configuration
 * (common/permissions.ts) and runs
 * `deno run --no-prompt -P=<command> --allow-net=<derived> [--allow-read/--allow-write=<derived>]
 * main.ts <command> [flags]`: the command may reach exactly the configured Kafka, PostgreSQL,
 * WebSocket source, listening address, KV folder and spool/recording paths, and its permission
 * set keeps the rest (env names, sys, run).
 *
 * Kafka clients also connect to the brokers the cluster advertises after bootstrapping (a proxy
 * in front of a broker advertises the broker's own address), so the launcher asks the bootstrap
 * servers for them first, from a probe process that may reach only the bootstrap list, and passes
 * them on as TICKPIPE_KAFKA_HOSTS (children of the command reuse them). An explicit
 * TICKPIPE_KAFKA_HOSTS skips the probe.
 *
 * The command shares the launcher's terminal and process group; SIGINT, SIGTERM and SIGHUP that
 * reach the launcher alone are passed on (the commands treat copies within 3 s as one request);
 * one that arrives after the command exited is ignored. The launcher exits with the command's
 * exit code.
 * @module
 */

import { ConfigError, readEnv } from "../common/config.ts";
import { denoRunArgs } from "../common/child.ts";
import { parseKafkaSecurity } from "../common/kafka_security.ts";
import { addSecret, createLogger, redact } from "../common/log.ts";
import {
  configuredBrokers,
  hasDerivedAccess,
  launchFlags,
  parseKafkaHosts,
  probesKafka,
} from "../common/permissions.ts";

const USAGE = `Usage: tickpipe launch [--print] <command> [flags]

Runs "main.ts <command> [flags]" under the command's permission set, with the hosts and paths
it may reach derived from its configuration (flags > environment > defaults): exactly the
Kafka bootstrap servers and the brokers the cluster advertises, the PostgreSQL host:port of
DATABASE_URL, the WebSocket --source, the simulator's --hostname/--port, the Deno KV folder,
the spool and --record paths. This is what "deno task <command>" does.

  --print   print the deno command line (JSON) instead of running it

Environment: TICKPIPE_KAFKA_HOSTS=host:port,...  the brokers the Kafka cluster advertises;
when unset, the launcher asks the bootstrap servers (a metadata request from a process that
may reach only them).`;

/** Signals passed on to the command. */
const FORWARDED: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** What the launcher runs. */
export interface LaunchPlan {
  /** The deno executable. */
  command: string;
  /** Its arguments. */
  args: string[];
  /** Environment added for the command (TICKPIPE_KAFKA_HOSTS when learned). */
  env: Record<string, string>;
}

/** Options for {@linkcode planLaunch}. */
export interface PlanOptions {
  /** Environment (default: the variables the launch set may read). */
  env?: (name: string) => string | undefined;
  /** Learns the advertised Kafka brokers (default: the metadata probe child). */
  probe?: (bootstrap: string[]) => Promise<string[] | null>;
}

/** Works out the command line for `command` with `args` (probing Kafka when it needs to). */
export async function planLaunch(
  command: string,
  args: readonly string[],
  options: PlanOptions = {},
): Promise<LaunchPlan> {
  const env = options.env ?? readEnv;
  const help = args.includes("--help") || args.includes("-h");
  const extraEnv: Record<string, string> = {};
  let kafkaHosts: string[] | undefined;
  if (!help && probesKafka(command)) {
    const given = env("TICKPIPE_KAFKA_HOSTS");
    if (given !== undefined) kafkaHosts = parseKafkaHosts(given);
    else {
      const security = parseKafkaSecurity(env);
      const probe = options.probe ??
        (async (b: string[]) =>
          (await import("../common/kafka_metadata.ts")).probeAdvertisedBrokers(b, {
            security,
            // A kafkajs client with a TLS and SASL handshake takes longer than one request.
            timeoutMs: security.protocol === "PLAINTEXT" ? undefined : 15_000,
          }));
      const learned = await probe(configuredBrokers(command, args, { env }));
      if (learned !== null && learned.length > 0) {
        kafkaHosts = learned;
        extraEnv.TICKPIPE_KAFKA_HOSTS = learned.join(",");
      } else {
        createLogger("launch").debug(
          "Kafka did not answer the metadata probe: allowing the bootstrap servers only",
          { command },
        );
      }
    }
  }
  if (!hasDerivedAccess(command)) {
    // Not a command: main.ts, with no permission at all, says so (exit 2).
    return { command: "deno", args: denoRunArgs(command, args, { permissionSet: null }), env: {} };
  }
  const denoFlags = help ? [] : launchFlags(command, args, { env, kafkaHosts });
  return { command: "deno", args: denoRunArgs(command, args, { denoFlags }), env: extraEnv };
}

/** Runs the command; returns its exit code. */
export async function main(args: string[]): Promise<number> {
  let print = false;
  let rest = args;
  if (rest[0] === "--print") {
    print = true;
    rest = rest.slice(1);
  }
  const [command, ...commandArgs] = rest;
  if (command === undefined || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === "launch") throw new ConfigError(`"launch launch" launches nothing`);
  let plan: LaunchPlan;
  try {
    plan = await planLaunch(command, commandArgs);
  } catch (e) {
    // A bad setting, reported as the command itself would report it.
    if (!(e instanceof ConfigError)) throw e;
    console.error(`tickpipe ${command}: ${redact(e.message)}`);
    return 2;
  }
  if (print) {
    // A dashboard token given as a flag is a secret like a URL's password.
    commandArgs.forEach((a, i) => {
      if (a === "--dashboard-token" && commandArgs[i + 1]) addSecret(commandArgs[i + 1]);
      if (a.startsWith("--dashboard-token=")) addSecret(a.slice("--dashboard-token=".length));
    });
    console.log(redact(JSON.stringify(plan)));
    return 0;
  }
  const child = new Deno.Command(plan.command, {
    args: plan.args,
    env: plan.env,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // The forwarders stay until the launcher exits: a signal that arrives after the command exited
  // (a supervisor's second SIGTERM) must not turn the command's exit code into "killed by
  // SIGTERM" (listeners do not keep the process alive).
  for (const signal of FORWARDED) {
    try {
      Deno.addSignalListener(signal, () => {
        try {
          child.kill(signal);
        } catch { /* exited */ }
      });
    } catch { /* not supported here */ }
  }
  const status = await child.status;
  return status.code;
}
