// Redaction (common/log.ts): URL userinfo passwords (also with unencoded @ / ? #), secret query
// parameters (`?password=`, which node-postgres honours), registered literal secrets (PGPASSWORD's
// value), in text and JSON log lines (which stay valid JSON), and deep values (progress rows, KV
// values, status output).
import assert from "node:assert/strict";
import {
  addSecret,
  createLogger,
  MIN_SECRET_LENGTH,
  redact,
  redactValue,
} from "../../common/log.ts";

Deno.test("redact: URL userinfo passwords, including unencoded @ / ? # in them", () => {
  const cases: [string, string][] = [
    ["postgres://me:hunter2@db:5432/x", "postgres://me:***@db:5432/x"],
    ["at postgresql://a:b%40c@h/d.", "at postgresql://a:***@h/d."],
    ["postgres://u:p@ss@h/db", "postgres://u:***@h/db"],
    ["postgres://u:pa/ss@h/db", "postgres://u:***@h/db"],
    ["postgres://u:pa#ss@h/db", "postgres://u:***@h/db"],
    ["postgres://u:pa?ss@h:5432/db?sslmode=off", "postgres://u:***@h:5432/db?sslmode=off"],
    ["postgres://u:%*&@%#Z9&bY./@h/db", "postgres://u:***@h/db"],
    ["postgres://u:4242@h/db", "postgres://u:***@h/db"],
    // An "@" in the query of a URL with a password: redacted up to it (too much, not too little).
    ["postgres://u:pw@h/db?application_name=me@corp", "postgres://u:***@corp"],
    [
      "DATABASE_URL=postgres://u:x@h/db, kafka://k:y@b:9092",
      "DATABASE_URL=postgres://u:***@h/db, kafka://k:***@b:9092",
    ],
    // Not passwords: no userinfo, a user without password, a port.
    ["postgres://h:5432/db?application_name=a@b", "postgres://h:5432/db?application_name=a@b"],
    ["postgres://user@h/db", "postgres://user@h/db"],
    ["postgres://user@h:5432/db?x=a@b", "postgres://user@h:5432/db?x=a@b"],
    ["ws://127.0.0.1:8765/?version=2", "ws://127.0.0.1:8765/?version=2"],
    ["no secrets here", "no secrets here"],
  ];
  for (const [input, want] of cases) assert.equal(redact(input), want, input);
});

Deno.test("redact: secret query parameters (?password=, &password=, any case, encoded names)", () => {
  const cases: [string, string][] = [
    ["postgres://u@h/db?password=s3cret", "postgres://u@h/db?password=***"],
    [
      "postgres://u@h/db?sslmode=off&password=s3cret&x=1",
      "postgres://u@h/db?sslmode=off&password=***&x=1",
    ],
    ["postgres://u@h/db?PASSWORD=s3cret", "postgres://u@h/db?PASSWORD=***"],
    ["postgres://u@h/db?pass%77ord=s3cret", "postgres://u@h/db?pass%77ord=***"],
    ["postgres://u@h/db?sslpassword=s3cret", "postgres://u@h/db?sslpassword=***"],
    ["wss://feed/?version=2&access_token=t0k#x", "wss://feed/?version=2&access_token=***#x"],
    ["https://x/?api_key=k3y", "https://x/?api_key=***"],
    ["postgres://u:a@h/db?password=b", "postgres://u:***@h/db?password=***"],
    // Kept: empty values and parameters that are not secrets.
    ["postgres://u@h/db?password=&sslmode=require", "postgres://u@h/db?password=&sslmode=require"],
    ["postgres://u@h/db?passwordless=1&user=me", "postgres://u@h/db?passwordless=1&user=me"],
  ];
  for (const [input, want] of cases) assert.equal(redact(input), want, input);
});

Deno.test("redact: randomized passwords never survive, the rest of the URL does", () => {
  const chars = "abcXYZ019!$&'()*+,;=~._-@:/?#%\"\\€";
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 3_000; i++) {
    let pw = "";
    for (let n = 6 + Math.floor(rnd() * 12); n > 0; n--) {
      pw += chars[Math.floor(rnd() * chars.length)];
    }
    const tail = "@db.example:5432/tick?sslmode=disable";
    for (const secret of [pw, encodeURIComponent(pw)]) {
      const url = `postgres://user:${secret}${tail}`;
      // Known limit: an unencoded password starting with 1-5 digits then / ? # reads as a port.
      if (`postgres://user:${tail}`.includes(secret) || /^\d{1,5}[/?#]/.test(secret)) continue;
      const out = redact(`failed: ${url} (retrying)`);
      assert.ok(!out.includes(secret), `${url} -> ${out}`);
      assert.equal(out, `failed: postgres://user:***${tail} (retrying)`, url);
    }
    const q = `postgres://user@db/tick?password=${encodeURIComponent(pw)}&sslmode=disable`;
    assert.equal(redact(q), "postgres://user@db/tick?password=***&sslmode=disable", q);
  }
});

Deno.test("redact: registered literal secrets (PGPASSWORD's value) in raw, encoded and JSON forms", () => {
  const secret = `Lit-${crypto.randomUUID().slice(0, 8)}"/x`;
  assert.ok(redact(`pw ${secret}`).includes(secret), "not a secret before it is registered");
  addSecret(secret);
  assert.equal(redact(`pw ${secret} again ${secret}`), "pw *** again ***");
  assert.equal(redact(`q=${encodeURIComponent(secret)}`), "q=***");
  assert.equal(redact(JSON.stringify({ v: secret })), '{"v":"***"}');
  const short = "q".repeat(MIN_SECRET_LENGTH - 1);
  addSecret(short);
  assert.equal(redact(`a ${short} b`), `a ${short} b`, "too short to be redacted as a literal");
});

Deno.test("redact: log lines in text and JSON; JSON lines stay valid JSON", () => {
  const lines: string[] = [];
  const url = "postgres://me:hunter22@db:5432/x?password=qp4ss&sslmode=off";
  for (const format of ["text", "json"] as const) {
    const log = createLogger("t", { write: (l) => lines.push(l), now: () => 0, format });
    log.info(`connecting to ${url}`, {
      url,
      nested: { list: [url, 1], deeper: { u: url } },
      err: new Error(`at ${url}`),
      quoted: `say "${url}"`,
    });
  }
  const all = lines.join("\n");
  assert.doesNotMatch(all, /hunter22|qp4ss/);
  assert.match(
    lines[0],
    /connecting to postgres:\/\/me:\*\*\*@db:5432\/x\?password=\*\*\*&sslmode=off/,
  );
  const rec = JSON.parse(lines[1]);
  assert.equal(rec.url, "postgres://me:***@db:5432/x?password=***&sslmode=off");
  assert.equal(rec.nested.deeper.u, rec.url);
  assert.equal(rec.err, `at ${rec.url}`);
  assert.equal(rec.quoted, `say "${rec.url}"`);
});

Deno.test("redactValue: a deep copy with every string redacted; the input is untouched", () => {
  const url = "postgres://u:hunter22@h/db?password=qp4ss";
  const bytes = new Uint8Array([1, 2]);
  const input = {
    reason: `cannot reach ${url}`,
    rows: [{ error: url, n: 1 }, null, 2],
    bytes,
    [`key ${url}`]: true,
  };
  const out = redactValue(input);
  assert.doesNotMatch(JSON.stringify(out), /hunter22|qp4ss/);
  assert.equal(out.reason, "cannot reach postgres://u:***@h/db?password=***");
  assert.deepEqual(out.rows, [{ error: "postgres://u:***@h/db?password=***", n: 1 }, null, 2]);
  assert.equal(out.bytes, bytes, "non-plain objects are kept as they are");
  assert.equal(input.reason, `cannot reach ${url}`, "input unchanged");
  const cyclic: Record<string, unknown> = { s: url };
  cyclic.self = cyclic;
  const copy = redactValue(cyclic) as { s: string; self: { s: string } };
  assert.equal(copy.s, "postgres://u:***@h/db?password=***");
  assert.equal(copy.self, copy, "a cycle points at the redacted copy, not at the original");
});
