// Documented defaults agree with the code: a property whose doc comment says "(default N ...)"
// must be read somewhere in its file as `options.<name> ?? N` when it is read that way at all
// (v1's aggregator documented a session timeout of 10 000 ms and used 6 000).
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;
const SKIP = new Set(["node_modules", ".data", "dist", ".git", "tests", "bench"]);

function sources(dir: string, out: string[] = []): string[] {
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}${e.name}`;
    if (e.isDirectory && !SKIP.has(e.name)) sources(`${p}/`, out);
    else if (e.isFile && e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** `10 000`, `10_000`, `1,000` → the number; anything else null. */
function num(text: string): number | null {
  const t = text.replace(/[ _,]/g, "");
  return /^\d+(\.\d+)?$/.test(t) ? Number(t) : null;
}

/** Each documented default of a property, with the defaults the file's code applies to it. */
function documentedDefaults(text: string) {
  const doc =
    /\/\*\*(?:[^*]|\*(?!\/))*?\(default (\d[\d _,.]*?)(?: ?ms| ?s)?[):;,](?:[^*]|\*(?!\/))*\*\/\s*(?:readonly\s+)?(\w+)\??:/g;
  return [...text.matchAll(doc)].map((m) => {
    const name = m[2];
    const uses = [...text.matchAll(new RegExp(`options\\.${name}\\s*\\?\\?\\s*([\\d_]+)\\b`, "g"))]
      .map((u) => num(u[1]));
    return { name, documented: num(m[1]), applied: uses };
  });
}

Deno.test("doc defaults: the checker finds a documented default the code contradicts", () => {
  const bad =
    `interface O {\n  /** kafkajs session timeout (default 10 000). */\n  sessionTimeoutMs?: number;\n}\n` +
    `const t = options.sessionTimeoutMs ?? 6_000;`;
  assert.deepEqual(documentedDefaults(bad), [
    { name: "sessionTimeoutMs", documented: 10_000, applied: [6000] },
  ]);
});

Deno.test("doc defaults: every documented default is one the code applies", () => {
  let checked = 0;
  for (const file of sources(ROOT)) {
    for (const d of documentedDefaults(Deno.readTextFileSync(file))) {
      if (d.documented === null || d.applied.length === 0) continue;
      checked++;
      assert.ok(
        d.applied.includes(d.documented),
        `${file.slice(ROOT.length)}: ${d.name} is documented as ${d.documented}, applied as ${
          d.applied.join(" or ")
        }`,
      );
    }
  }
  assert.ok(checked >= 10, `${checked} documented defaults checked`);
});

/** The `?? <literal>` fallbacks of a module's text, with their values. */
function fallbacksIn(text: string): { value: number; text: string }[] {
  return [...text.matchAll(/\?\?\s*(\d[\d_]*(?:\s*\*\*?\s*\d[\d_]*)*)\b/g)].map((m) => ({
    // deno-lint-ignore no-eval
    value: Number(eval(m[1].replaceAll("_", ""))),
    text: m[0],
  }));
}

/** `?? <literal>` fallbacks in a folder's modules, except its defaults and options modules. */
function literalFallbacks(folder: string): { file: string; value: number; text: string }[] {
  const out: { file: string; value: number; text: string }[] = [];
  for (const file of sources(`${ROOT}${folder}/`)) {
    if (/\/(defaults|options)\.ts$/.test(file)) continue;
    const rel = file.slice(ROOT.length);
    for (const f of fallbacksIn(Deno.readTextFileSync(file))) out.push({ file: rel, ...f });
  }
  return out;
}

Deno.test("defaults: a flag's default is written once (ingest/defaults.ts, aggregate/defaults.ts), never as a literal fallback", async () => {
  const { INGEST_FLAGS } = await import("../../ingest/options.ts");
  const { AGGREGATOR_FLAGS } = await import("../../aggregate/options.ts");
  const { AGGREGATOR_DEFAULTS } = await import("../../aggregate/defaults.ts");
  const numbers = (values: unknown[]) =>
    new Set(values.filter((v): v is number => typeof v === "number" && v > 1));
  const cases = [
    {
      folder: "ingest",
      defaults: numbers(
        Object.values(INGEST_FLAGS).map((f) => (f as { default?: unknown }).default),
      ),
    },
    {
      folder: "aggregate",
      defaults: numbers([
        ...Object.values(AGGREGATOR_FLAGS).map((f) => (f as { default?: unknown }).default),
        ...Object.values(AGGREGATOR_DEFAULTS),
      ]),
    },
  ];
  for (const { folder, defaults } of cases) {
    assert.ok(defaults.size >= 5, `${folder}: the flags' numeric defaults are found`);
    const dup = literalFallbacks(folder).filter((f) => defaults.has(f.value));
    assert.deepEqual(dup, [], `${folder}: a flag's default written again as a literal`);
  }
  // The checker itself finds such literals, and names nothing else.
  const found = fallbacksIn(
    "const a = o.batchSize ?? 5000;\nconst b = o.max ?? 1024 ** 3;\nconst c = o.x ?? DEFAULT_X;",
  );
  assert.deepEqual(found.map((f) => f.value), [5000, 1024 ** 3]);
});
