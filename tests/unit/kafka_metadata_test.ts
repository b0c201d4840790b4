// The launcher's Kafka metadata probe, pure parts: the Metadata v6 request bytes, and reading the
// advertised brokers of responses built by an independent encoder (random brokers, racks, hosts);
// every truncation and a wrong correlation id are errors naming the problem.
import assert from "node:assert/strict";
import {
  brokerAddress,
  decodeMetadataBrokers,
  encodeMetadataRequest,
  KafkaMetadataError,
} from "../../common/kafka_metadata.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

/** An independent Metadata v1-v8 response body encoder (after the size prefix). */
function responseBody(
  correlationId: number,
  brokers: { nodeId: number; host: string; port: number; rack: string | null }[],
): Uint8Array {
  const parts: number[] = [];
  const i32 = (x: number) =>
    parts.push((x >>> 24) & 255, (x >>> 16) & 255, (x >>> 8) & 255, x & 255);
  const i16 = (x: number) => parts.push((x >>> 8) & 255, x & 255);
  const str = (s: string | null) => {
    if (s === null) return i16(0xffff);
    const b = new TextEncoder().encode(s);
    i16(b.length);
    parts.push(...b);
  };
  i32(correlationId);
  i32(0); // throttle
  i32(brokers.length);
  for (const b of brokers) {
    i32(b.nodeId);
    str(b.host);
    i32(b.port);
    str(b.rack);
  }
  str("cluster-id");
  i32(brokers[0]?.nodeId ?? -1); // controller
  i32(0); // topics
  return new Uint8Array(parts);
}

Deno.test("kafka metadata: the request is Metadata v6 for no topic, size-prefixed", () => {
  const req = encodeMetadataRequest(0x01020304, "ab");
  const v = new DataView(req.buffer);
  assert.equal(v.getInt32(0), req.length - 4, "size prefix");
  assert.equal(v.getInt16(4), 3, "api key Metadata");
  assert.equal(v.getInt16(6), 6, "version 6");
  assert.equal(v.getInt32(8), 0x01020304, "correlation id");
  assert.equal(v.getInt16(12), 2);
  assert.equal(new TextDecoder().decode(req.subarray(14, 16)), "ab");
  assert.equal(v.getInt32(16), 0, "an empty topic array: no topic (null would mean all)");
  assert.equal(v.getInt8(20), 0, "no auto-creation");
  assert.equal(req.length, 21);
});

Deno.test("kafka metadata: random responses decode to their brokers; truncations are errors", () => {
  const rnd = prng(42);
  const hosts = ["127.0.0.1", "kafka-0.kafka.svc", "::1", "b", "broker.example.com", "10.1.2.3"];
  for (let n = 0; n < 300; n++) {
    const brokers = Array.from({ length: Math.floor(rnd() * 5) }, (_, i) => ({
      nodeId: i + Math.floor(rnd() * 1000),
      host: hosts[Math.floor(rnd() * hosts.length)],
      port: 1 + Math.floor(rnd() * 65535),
      rack: rnd() < 0.5 ? null : `rack-${i}`,
    }));
    const corr = Math.floor(rnd() * 2 ** 31);
    const body = responseBody(corr, brokers);
    assert.deepEqual(
      decodeMetadataBrokers(body, corr),
      brokers.map(({ nodeId, host, port }) => ({ nodeId, host, port })),
    );
    const brokersEnd = body.length - (2 + 10 + 4 + 4); // before cluster id, controller, topics
    const cut = 1 + Math.floor(rnd() * (brokersEnd - 1));
    assert.throws(
      () => decodeMetadataBrokers(body.subarray(0, cut), corr),
      (e) => e instanceof KafkaMetadataError && /truncated/.test(e.message),
      `cut at ${cut} of ${body.length}`,
    );
    assert.throws(
      () => decodeMetadataBrokers(body, corr + 1),
      (e) => e instanceof KafkaMetadataError && /answers request/.test(e.message),
    );
  }
  assert.throws(
    () => decodeMetadataBrokers(responseBody(1, [{ nodeId: 1, host: "", port: 1, rack: null }]), 1),
    (e) => e instanceof KafkaMetadataError && /advertises broker 1 at ":1"/.test(e.message),
  );
});

Deno.test("kafka metadata: IPv6 hosts are bracketed as --allow-net takes them", () => {
  assert.equal(brokerAddress({ host: "::1", port: 9092 }), "[::1]:9092");
  assert.equal(brokerAddress({ host: "kafka", port: 9092 }), "kafka:9092");
});
