/**
 * `tickpipe offsets`: inspects (or, with `reset`, rewrites) the offsets,
 * watermarks, checkpoint and lease the aggregator keeps in Deno KV.
 * @module
 */

import { CONNECTION_FLAGS, CONNECTION_TITLE, parseCommandLine, UsageError } from "../common/cli.ts";
import { sectionsUsage } from "../common/options.ts";
import { OFFSETS_COMMAND, OFFSETS_FLAGS } from "./options.ts";
import { loadBaseConfig } from "../common/config.ts";
import { createLogger } from "../common/log.ts";

const USAGE = `Usage: tickpipe offsets [--json] [--all]
       tickpipe offsets reset --to earliest|latest|N --yes

Shows, per partition, the offset the aggregator stored in Deno KV (next to
read), Kafka's start and end offsets, the lag and the watermark; then the
checkpoint generation and time, the lease holder and expiry, the last progress
record and the sensor's launches.

reset rewrites the checkpoint's offsets of every partition to Kafka's earliest
or latest offset, or to N, and drops the window state; the watermarks are kept
(as floors), so what was late stays late and final rows stay final (a final
row is never changed). Ticks before the old offsets that are late again are not
recorded twice. It is also the way out of a topic identity mismatch (the topic
was deleted and recreated, or the broker wiped, under the stored offsets). Refused
(exit 3) while an aggregator holds a live lease; needs --yes (else exit 2).

${
  sectionsUsage([
    { title: "Flags:", table: OFFSETS_FLAGS },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}

Exit codes: 0 ok, 1 error, 2 bad flags or missing --yes, 3 reset refused (lease held).`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: values, positionals } = parseCommandLine(args, OFFSETS_COMMAND);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const sub = positionals[0];
  if (positionals.length > 1 || (sub !== undefined && sub !== "reset")) {
    throw new UsageError(`Unexpected argument "${positionals.at(-1)}": expected "reset" or none`);
  }
  const config = loadBaseConfig(values);
  const log = createLogger("offsets");
  const { createKafka, connectAdmin } = await import("../common/kafka.ts");
  const { openKv } = await import("../common/kv.ts");
  const off = await import("./offsets.ts");

  let target: ReturnType<typeof off.parseResetTarget> = null;
  if (sub === "reset") {
    if (values.to === undefined) throw new UsageError(`reset needs --to earliest|latest|N`);
    target = off.parseResetTarget(values.to);
    if (target === null) {
      throw new UsageError(
        `--to "${values.to}" is invalid: expected earliest, latest or an offset`,
      );
    }
    if (!values.yes) {
      console.error(
        `offsets reset rewrites the stored offsets of topic "${config.topic}" to ${values.to} and ` +
          `drops the aggregator's window state: add --yes to confirm`,
      );
      return 2;
    }
  } else if (values.to !== undefined || values.yes) {
    throw new UsageError(`--to and --yes only apply to "offsets reset"`);
  }

  // A broker the cluster advertises that this process may not reach: exit 2 naming it, at once.
  const { exitDenied } = await import("../common/permissions.ts");
  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-offsets",
    logger: log,
    onDenied: exitDenied,
  });
  const admin = await connectAdmin(kafka, config.brokers);
  const { withKvRetry } = await import("../common/kv.ts");
  const kv = await withKvRetry(() => openKv(config.kvPath));
  try {
    if (sub === "reset") {
      try {
        const r = await withKvRetry(() =>
          off.resetOffsets(admin, kv, { topic: config.topic, target: target!, now: Date.now() })
        );
        if (values.json) console.log(JSON.stringify(r));
        else {
          console.log(
            `reset topic ${r.topic}: offsets ${JSON.stringify(r.before)} -> ${
              JSON.stringify(r.after)
            }, window state dropped (generation ${r.generation}, ${r.deletedChunks} chunks ` +
              `deleted), watermarks kept ${JSON.stringify(r.watermarks)}` +
              (r.identityReset ? "; the old offsets did not belong to this topic" : ""),
          );
        }
        return 0;
      } catch (e) {
        if (e instanceof off.ResetLeaseHeldError) {
          console.error(e.message);
          return 3;
        }
        if (e instanceof off.ResetTargetError) {
          console.error(e.message);
          return 2;
        }
        throw e;
      }
    }
    const topics = values.all ? await off.topicsInKv(kv) : [config.topic];
    const reports = [];
    for (const topic of topics) {
      reports.push(
        await withKvRetry(() => off.inspectOffsets(admin, kv, { topic, now: Date.now() })),
      );
    }
    if (values.json) {
      console.log(JSON.stringify(values.all ? reports : reports[0], null, 2));
    } else {
      console.log(reports.map(off.formatReport).join("\n\n") || "no topics in KV");
    }
    return 0;
  } finally {
    kv.close();
    await admin.disconnect().catch(() => {});
  }
}
