/**
 * The demo's fresh start: empties its topic so that every run begins from an empty state whatever
 * the previous run left (its records in Kafka, its checkpoint, lease and sensor records in KV,
 * its rows in PostgreSQL and the ingest spool). Without it, a second demo within the first one's
 * event-time span would find its ticks late against the restored watermarks.
 * @module
 */

import type { Kafka } from "../common/kafka.ts";
import type { Pool } from "../common/pg.ts";
import { isLeaseLive, KV_PREFIX } from "../aggregate/kv_layout.ts";
import { readLease } from "../aggregate/lease.ts";

/** Raised when the demo topic cannot be emptied because an aggregator holds its lease. */
export class DemoBusyError extends Error {
  /** Creates the error naming the topic and the holder. */
  constructor(topic: string, holder: { pid: number; hostname: string }) {
    super(
      `Topic "${topic}" is in use: an aggregator (pid ${holder.pid} on ${holder.hostname}) holds ` +
        `its lease. Is another demo running? Stop it first`,
    );
    this.name = "DemoBusyError";
  }
}

/** What {@linkcode resetDemoTopic} removed. */
export interface DemoResetResult {
  /** Kafka records deleted (topic and dead-letter topic). */
  records: number;
  /** PostgreSQL rows deleted (price_windows, late_ticks, rejected_rows, aggregator_progress). */
  rows: number;
  /** KV entries deleted. */
  kvKeys: number;
}

/** Tables with a `topic` column that the demo empties for its topic. */
const TABLES = ["price_windows", "late_ticks", "rejected_rows", "aggregator_progress"] as const;

/**
 * Empties `topic` for a fresh demo run: deletes its Kafka records (and its `.dlq`'s: the topics
 * themselves stay, so nothing waits for a topic deletion), every KV entry under
 * `["tickpipe", topic]`, its rows in PostgreSQL and its ingest spool directory. Throws
 * DemoBusyError while an aggregator holds the topic's lease.
 */
export async function resetDemoTopic(
  topic: string,
  deps: { kafka: Kafka; pool: Pool; kv: Deno.Kv; spoolDir?: string; now?: number },
): Promise<DemoResetResult> {
  const held = await readLease(deps.kv, topic);
  if (held !== null && isLeaseLive(held.lease, deps.now ?? Date.now())) {
    throw new DemoBusyError(topic, held.lease);
  }
  let records = 0;
  const admin = deps.kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    for (const t of [topic, `${topic}.dlq`]) {
      if (!existing.has(t)) continue;
      const offsets = await admin.fetchTopicOffsets(t);
      const full = offsets.filter((o) => Number(o.high) > Number(o.low));
      if (full.length === 0) continue;
      await admin.deleteTopicRecords({
        topic: t,
        partitions: full.map((o) => ({ partition: o.partition, offset: o.high })),
      });
      records += full.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
    }
  } finally {
    await admin.disconnect().catch(() => {});
  }
  let kvKeys = 0;
  for await (const e of deps.kv.list({ prefix: [KV_PREFIX, topic] })) {
    await deps.kv.delete(e.key);
    kvKeys++;
  }
  let rows = 0;
  for (const table of TABLES) {
    const r = await deps.pool.query(`DELETE FROM ${table} WHERE topic = $1`, [topic]);
    rows += r.rowCount ?? 0;
  }
  await Deno.remove(deps.spoolDir ?? `.data/spool/${topic}`, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  return { records, rows, kvKeys };
}
