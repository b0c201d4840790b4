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
