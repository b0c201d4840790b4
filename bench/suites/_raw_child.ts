/**
 * Raw baseline processes for the memory suite, run as `deno run -A bench/suites/_raw_child.ts`:
 *
 * - `drain <topic> <group> <count> [exit]`: a plain kafkajs consumer counting messages
 *   (eachBatch); prints `first <n>` at its first batch and `done <count>` once `count` are seen,
 *   then idles until killed, or with `exit` exits 0 at once (the backlog suites time it to exit).
 * - `forward <ws-url> <topic> <symbols-file>`: WebSocket clients (100 symbols each) forwarding
 *   raw frames to Kafka with sendBatch every 5 ms (no parsing), until killed.
 *
 * Both run with common/kafkajs_idle_fix.ts (loaded by common/kafka.ts), like every tickpipe process.
 * Uses KAFKA_BROKERS (default 127.0.0.1:9092).
 * @module
 */

import { loadBaseConfig } from "../../common/config.ts";
import { createKafka } from "../../common/kafka.ts";
import { createLogger } from "../../common/log.ts";

const config = loadBaseConfig();
const kafka = createKafka(config.brokers, {
  clientId: "tickpipe-bench-raw",
  logger: createLogger("raw", { level: "error" }),
});
const [mode, ...args] = Deno.args;

if (mode === "drain") {
  const [topic, group, countText, then] = args;
  const count = Number(countText);
  const exitWhenDone = then === "exit";
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 250 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let seen = 0;
  let printed = false;
  await consumer.run({
    eachBatch: ({ batch }) => {
      if (seen === 0 && batch.messages.length > 0) console.log(`first ${batch.messages.length}`);
      seen += batch.messages.length;
      if (seen >= count && !printed) {
        printed = true;
        console.log(`done ${seen}`);
        if (exitWhenDone) Deno.exit(0);
      }
      return Promise.resolve();
    },
  });
} else if (mode === "forward") {
  const [url, topic, symbolsFile] = args;
  const symbols = (await Deno.readTextFile(symbolsFile)).split("\n").filter((s) => s !== "");
  const producer = kafka.producer();
  await producer.connect();
  let buf: { value: string }[] = [];
  let sending = false;
  setInterval(async () => {
    if (sending || buf.length === 0) return;
    sending = true;
    const batch = buf;
    buf = [];
    try {
      await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: batch }] });
    } catch { /* baseline: drop */ }
    sending = false;
  }, 5);
  for (let i = 0; i < symbols.length; i += 100) {
    const ws = new WebSocket(url);
    const shard = symbols.slice(i, i + 100);
    ws.onopen = () => ws.send(JSON.stringify({ subscribe: shard }));
    ws.onmessage = (e) => buf.push({ value: String(e.data) });
  }
  console.log("forwarding");
} else {
  console.error(`Unknown mode ${JSON.stringify(mode)}: expected drain or forward`);
  Deno.exit(2);
}
