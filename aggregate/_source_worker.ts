/**
 * The tick source's consumer thread (started by source.ts): a kafkajs client of its own on the
 * aggregator's brokers, running `runConsumer` and posting its events (batches transferred, not
 * cloned) to the main thread. Its log lines go to the main thread's logger.
 * @module
 */
/// <reference lib="deno.worker" />

import { createKafka } from "../common/kafka.ts";
import type { LogFields, Logger } from "../common/log.ts";
import {
  type ConsumerCommand,
  type ConsumerControl,
  type ConsumerEvent,
  type ConsumerSettings,
  errorData,
  runConsumer,
} from "./source.ts";

interface StartCommand {
  type: "start";
  brokers: string[];
  settings: ConsumerSettings;
}

const post = (event: ConsumerEvent, transfer?: ArrayBuffer[]) =>
  self.postMessage(event, transfer ? { transfer } : undefined);

/** Errors become plain fields (name and message) so that they can cross threads. */
function plain(fields?: LogFields): LogFields | undefined {
  if (fields === undefined) return undefined;
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? errorData(v) : v;
  }
  return out;
}

function forwardingLogger(prefix: string): Logger {
  const at = (level: "debug" | "info" | "warn" | "error") => (msg: string, fields?: LogFields) =>
    post({ type: "log", level, msg: prefix + msg, fields: plain(fields) });
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (name: string) => forwardingLogger(`${prefix}${name}: `),
  };
}

let control: ConsumerControl | undefined;
let starting = false;
// Commands that arrive while the consumer starts (batches can be taken before it reports ready).
const early: ConsumerCommand[] = [];

function apply(c: ConsumerControl, cmd: ConsumerCommand): Promise<void> | void {
  if (cmd.type === "hold") c.setHeld(cmd.held);
  else if (cmd.type === "taken") c.taken(cmd.bytes);
  else return c.stop();
}

self.onmessage = async (e: MessageEvent<StartCommand | ConsumerCommand>) => {
  const cmd = e.data;
  if (cmd.type === "start") {
    starting = true;
    // Denied brokers are reported by the main thread's client (it reaches the same brokers).
    const kafka = createKafka(cmd.brokers, {
      clientId: "tickpipe-aggregate",
      logger: forwardingLogger("kafka: "),
    });
    let c: ConsumerControl;
    try {
      c = await runConsumer(kafka, cmd.settings, post);
    } catch (err) {
      starting = false;
      post({ type: "start-failed", error: errorData(err) });
      return;
    }
    control = c;
    post({ type: "ready" });
    for (const pending of early.splice(0)) await apply(c, pending);
  } else if (control === undefined) {
    if (cmd.type === "stop" && early.length === 0 && !starting) post({ type: "stopped" });
    else early.push(cmd);
  } else await apply(control, cmd);
};
