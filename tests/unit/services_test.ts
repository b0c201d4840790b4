import assert from "node:assert/strict";
import { clusterId } from "../../services/kafka.ts";

Deno.test("services: KRaft cluster ids are 22 URL-safe base64 characters, never starting with '-'", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const id = clusterId();
    assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/, id);
    seen.add(id);
  }
  assert.equal(seen.size, 5000, "ids are random");
});
