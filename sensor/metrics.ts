/**
 * The sensor's Prometheus metrics: checks, decisions by kind, launches and how the launched
 * aggregators ended. A sensor is instrumented by wrapping it (`instrument`), so the check
 * logic (run.ts) knows nothing about metrics.
 * @module
 */

import { Counter, durationBuckets, Gauge, Histogram, type Registry } from "../common/metrics.ts";
import type { Sensor } from "./run.ts";
import { type DecisionKind, EXIT_LEASE_HELD } from "./sensor.ts";

/** Decision kinds present (at 0) from the first scrape; any other kind appears when taken. */
const KNOWN_DECISIONS: readonly DecisionKind[] = [
  "launch",
  "no-new-data",
  "lease-held",
  "backoff",
  "child-running",
];

/** How a launched aggregator ended, as `tickpipe_sensor_aggregator_exits_total` labels it. */
export type ExitOutcome = "ok" | "lease_held" | "failed" | "unknown";

/** The outcome of an aggregator exit code: 0 ok, 3 lease held elsewhere, others failed. */
export function exitOutcome(code: number | null): ExitOutcome {
  if (code === null) return "unknown";
  if (code === 0) return "ok";
  if (code === EXIT_LEASE_HELD) return "lease_held";
  return "failed";
}

/** The sensor's instruments. */
export interface SensorMetrics {
  /** A sensor that counts its checks, decisions, launches and the launched aggregators' exits. */
  instrument(sensor: Sensor): Sensor;
}

/** Registers the sensor's metrics in `registry`; `topic` labels the per-partition gauge. */
export function createSensorMetrics(
  registry: Registry,
  options: { topic: string; now?: () => number },
): SensorMetrics {
  const now = options.now ?? Date.now;
  const registers = [registry];
  const checks = new Counter({
    name: "tickpipe_sensor_checks_total",
    help: "Sensor checks, by outcome (ok: a decision was taken; error: Kafka or KV failed).",
    labelNames: ["outcome"],
    registers,
  });
  checks.inc({ outcome: "ok" }, 0);
  checks.inc({ outcome: "error" }, 0);
  const duration = new Histogram({
    name: "tickpipe_sensor_check_duration_seconds",
    help: "Duration of a sensor check (offsets, KV state, decision, launch), in seconds.",
    buckets: durationBuckets(0.005, 50),
    registers,
  });
  const decisions = new Counter({
    name: "tickpipe_sensor_decisions_total",
    help: "Decisions taken by sensor checks, by kind (launch, no-new-data, lease-held, " +
      "backoff, child-running, ...).",
    labelNames: ["decision"],
    registers,
  });
  for (const decision of KNOWN_DECISIONS) decisions.inc({ decision }, 0);
  const launches = new Counter({
    name: "tickpipe_sensor_launches_total",
    help: "Aggregators launched by this sensor.",
    registers,
  });
  const exits = new Counter({
    name: "tickpipe_sensor_aggregator_exits_total",
    help: "Exits of aggregators this sensor launched, by outcome (ok: exit 0; lease_held: " +
      "exit 3, another aggregator holds the lease; failed: any other code; unknown: not awaited).",
    labelNames: ["outcome"],
    registers,
  });
  for (const outcome of ["ok", "lease_held", "failed"]) exits.inc({ outcome }, 0);
  const unread = new Gauge({
    name: "tickpipe_sensor_unread_records",
    help: "Records in Kafka after the offset the aggregator stored, per partition, at the " +
      "last check.",
    labelNames: ["topic", "partition"],
    registers,
  });
  const lastCheck = new Gauge({
    name: "tickpipe_sensor_last_check_timestamp_seconds",
    help: "When the last successful check ended, seconds since the Unix epoch.",
    registers,
  });
  let running: () => boolean = () => false;
  new Gauge({
    name: "tickpipe_sensor_aggregator_running",
    help: "1 while an aggregator this sensor launched is running, else 0.",
    registers,
    collect() {
      this.set(running() ? 1 : 0);
    },
  });

  return {
    instrument(sensor) {
      running = () => sensor.child() !== null;
      return {
        child: () => sensor.child(),
        settled: () => sensor.settled(),
        async check() {
          const end = duration.startTimer();
          try {
            const result = await sensor.check();
            checks.inc({ outcome: "ok" });
            decisions.inc({ decision: result.decision.kind });
            unread.reset();
            for (const p of result.decision.perPartition) {
              unread.set({ topic: options.topic, partition: String(p.partition) }, p.unread);
            }
            lastCheck.set(now() / 1000);
            const launched = result.launched;
            if (launched !== null) {
              launches.inc();
              // Counted once the sensor has settled the exit (recorded in KV, no child running):
              // a scrape never sees the exit counted while the running gauge still says 1.
              sensor.settled().then(
                (code) => exits.inc({ outcome: exitOutcome(code) }),
                () => exits.inc({ outcome: "unknown" }),
              );
            }
            return result;
          } catch (e) {
            checks.inc({ outcome: "error" });
            throw e;
          } finally {
            end();
          }
        },
      };
    },
  };
}
