/**
 * Shared test setup: the configuration the integration tests use (the same
 * defaults as every command, overridable by env) and helpers to create
 * isolated topics, databases rows and KV files.
 * @module
 */

import { denoRunArgs } from "../../common/child.ts";
import { loadBaseConfig } from "../../common/config.ts";
import { createKafka } from "../../common/kafka.ts";
import { createLogger } from "../../common/log.ts";
import { createPool } from "../../common/pg.ts";

/** Config for integration tests (env or defaults). */
export const config = loadBaseConfig();

/** A quiet logger for tests (warnings and errors only). */
export const quietLogger = createLogger("test", { level: "warn" });

/** A kafkajs client for tests. */
export function testKafka() {
  return createKafka(config.brokers, { clientId: "tickpipe-test", logger: quietLogger });
}

/** A pg pool for tests. */
export function testPool() {
  return createPool(config.databaseUrl, { applicationName: "tickpipe-test" });
}

/** A unique name for a test resource (topic, group, file). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A fresh KV path under .data/test/. */
export async function tempKvPath(prefix = "kv"): Promise<string> {
  await Deno.mkdir(".data/test", { recursive: true });
  return `.data/test/${uniqueName(prefix)}.kv`;
}

/** Runs `main.ts` with args under permission set `set`; returns code and output. */
export async function runCli(
  set: string | null,
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [command, ...rest] = args;
  const cmd = new Deno.Command(Deno.execPath(), {
    args: denoRunArgs(command, rest, { permissionSet: set }),
    env: { NO_COLOR: "1", ...options.env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  });
  const child = cmd.spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, options.timeoutMs ?? 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
