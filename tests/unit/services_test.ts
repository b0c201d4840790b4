// `services` without servers: KRaft ids, Kafka version selection and the data-version rule (pure),
// the safe file-system steps (private folders, exclusive files, no link followed, nothing
// non-empty deleted) and where the PostgreSQL cluster is placed. Everything happens in private
// temp folders; the steps that hand folders to the `postgres` user need root and are skipped
// (with the reason printed) otherwise.
import assert from "node:assert/strict";
import {
  checkDataVersion,
  clusterId,
  compareVersions,
  DEFAULT_KAFKA_VERSION,
  KAFKA_VERSIONS,
  KafkaDataVersionError,
  kafkaPaths,
  parseKafkaVersion,
  startKafka,
} from "../../services/kafka.ts";
import {
  currentOwner,
  ensurePrivateDir,
  lookupOwner,
  makePrivateTempDir,
  type Owner,
  replaceFile,
  verifySecurePath,
  writeNewFile,
} from "../../services/_fs.ts";
import { prepareCluster } from "../../services/postgres.ts";
import { ServiceError } from "../../services/_process.ts";
import { ConfigError } from "../../common/config.ts";
import { createLogger } from "../../common/log.ts";

const quiet = createLogger("test", { level: "error" });
const isRoot = Deno.uid() === 0;
const hasPostgresUser = isRoot &&
  (await new Deno.Command("id", { args: ["-u", "postgres"], stdout: "null", stderr: "null" })
    .output()).success;
const ROOT_REASON = !isRoot
  ? "not root: handing folders to the postgres user needs root"
  : !hasPostgresUser
  ? "no local postgres user (Debian's postgresql is not installed)"
  : "";
if (ROOT_REASON) console.log(`services unit: skipping the root-only tests: ${ROOT_REASON}`);

const mode = async (path: string) => ((await Deno.lstat(path)).mode ?? 0) & 0o7777;
/** Every entry under `dir` with its kind, mode, owner and content (files): a full snapshot. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries = [];
    for await (const e of Deno.readDir(d)) entries.push(e.name);
    for (const name of entries.sort()) {
      const p = `${d}/${name}`;
      const st = await Deno.lstat(p);
      const kind = st.isSymlink
        ? `link->${await Deno.readLink(p)}`
        : st.isDirectory
        ? "dir"
        : "file";
      const body = st.isFile ? await Deno.readTextFile(p) : "";
      out.push(`${p.slice(dir.length)} ${kind} ${(st.mode ?? 0) & 0o7777} ${st.uid} ${body}`);
      if (st.isDirectory && !st.isSymlink) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-svc-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// --- Kafka: ids, versions ------------------------------------------------------------------

Deno.test("services: KRaft cluster ids are 22 URL-safe base64 characters, never starting with '-'", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const id = clusterId();
    assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/, id);
    seen.add(id);
  }
  assert.equal(seen.size, 5000, "ids are random");
});

Deno.test("services: KAFKA_VERSION accepts the supported versions, defaults to 4.4.0, rejects the rest naming them", () => {
  assert.equal(DEFAULT_KAFKA_VERSION, "4.4.0");
  assert.deepEqual([...KAFKA_VERSIONS].sort(), ["3.9.1", "4.4.0"]);
  assert.equal(parseKafkaVersion(undefined), "4.4.0");
  assert.equal(parseKafkaVersion(""), "4.4.0");
  for (const v of KAFKA_VERSIONS) assert.equal(parseKafkaVersion(v), v);
  const bad = ["4.4", "4.0.0", "3.9.0", "latest", "4.4.0.1", "v4.4.0", "3.9.1-SNAPSHOT", "9.9.9"];
  for (let i = 0; i < 200; i++) {
    const chars = "0123456789.abv-";
    bad.push(
      Array.from({ length: 1 + (i % 9) }, () => chars[Math.floor(Math.random() * chars.length)])
        .join(""),
    );
  }
  for (const b of bad) {
    if ((KAFKA_VERSIONS as readonly string[]).includes(b.trim()) || b.trim() === "") continue;
    assert.throws(() => parseKafkaVersion(b), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.ok(e.message.includes(`KAFKA_VERSION="${b}"`), e.message);
      for (const v of KAFKA_VERSIONS) assert.ok(e.message.includes(v), e.message);
      return true;
    });
  }
});

Deno.test("services: compareVersions orders dotted versions like a tuple comparison", () => {
  const sign = (n: number) => Math.sign(n);
  for (let i = 0; i < 2000; i++) {
    const a = Array.from({ length: 3 }, () => Math.floor(Math.random() * 12));
    const b = i % 5 === 0
      ? [...a]
      : Array.from({ length: 3 }, () => Math.floor(Math.random() * 12));
    let oracle = 0;
    for (let k = 0; k < 3 && oracle === 0; k++) oracle = sign(a[k] - b[k]);
    assert.equal(sign(compareVersions(a.join("."), b.join("."))), oracle, `${a} vs ${b}`);
  }
  assert.ok(compareVersions("3.9.1", "4.4.0") < 0);
  assert.ok(compareVersions("4.10.0", "4.4.0") > 0, "numeric, not lexicographic");
});

Deno.test("services: a data folder of another Kafka version: same runs, older upgrades only when asked, newer is refused", () => {
  const dataDir = "/x/.data";
  assert.equal(
    checkDataVersion({ version: "4.4.0", source: "marker" }, "4.4.0", { dataDir }),
    "same",
  );
  assert.equal(
    checkDataVersion({ version: "3.9.1", source: "marker" }, "4.4.0", { dataDir, upgrade: true }),
    "upgrade",
  );
  assert.throws(
    () => checkDataVersion({ version: "3.9.1", source: "assumed" }, "4.4.0", { dataDir }),
    (e: unknown) => {
      assert.ok(e instanceof KafkaDataVersionError);
      const m = e.message;
      assert.match(m, /written by Kafka 3\.9\.1 \(assumed/);
      assert.match(m, /Kafka 4\.4\.0 is selected/);
      assert.match(m, /Nothing was started or changed/);
      assert.match(m, /KAFKA_VERSION=3\.9\.1/, "says how to keep the old version");
      assert.match(m, /--upgrade-kafka/, "says how to upgrade in place");
      assert.match(m, /mv \/x\/\.data\/kafka\/data /, "says how to start empty");
      return true;
    },
  );
  for (const upgrade of [false, true]) {
    assert.throws(
      () => checkDataVersion({ version: "4.4.0", source: "log" }, "3.9.1", { dataDir, upgrade }),
      (e: unknown) => {
        assert.ok(e instanceof KafkaDataVersionError);
        assert.match(e.message, /written by Kafka 4\.4\.0 \(according to the broker log\)/);
        assert.match(e.message, /never starts an older broker/);
        assert.match(e.message, /KAFKA_VERSION=4\.4\.0/);
        assert.doesNotMatch(e.message, /--upgrade-kafka/, "no upgrade path for a downgrade");
        return true;
      },
    );
  }
});

Deno.test("services: each supported Kafka version has its own pom resolving kafka_2.13 at that version", async () => {
  for (const v of KAFKA_VERSIONS) {
    const pom = await Deno.readTextFile(`services/kafka/${v}/pom.xml`);
    assert.match(pom, new RegExp(`<kafka.version>${v.replaceAll(".", "\\.")}</kafka.version>`));
    assert.match(pom, /<artifactId>kafka_2\.13<\/artifactId>\s*<version>\$\{kafka\.version\}/);
    // 3.x logs through log4j 1 (reload4j), 4.x through log4j 2: the binding must match.
    const binding = v.startsWith("3.") ? "slf4j-reload4j" : "log4j-slf4j-impl";
    assert.ok(pom.includes(`<artifactId>${binding}</artifactId>`), `${v} pom binds ${binding}`);
  }
});

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("services: startKafka refuses data written by another version before touching anything", async () => {
  await withTemp(async (dir) => {
    const p = kafkaPaths(`${dir}/.data`);
    await Deno.mkdir(p.data, { recursive: true });
    await Deno.writeTextFile(`${p.data}/meta.properties`, "version=1\nnode.id=1\n");
    await Deno.writeTextFile(p.dataVersion, "3.9.1\n");
    await Deno.mkdir(`${p.data}/ticks-0`);
    await Deno.writeTextFile(`${p.data}/ticks-0/00000000000000000000.log`, "records");
    const before = await snapshot(dir);
    await assert.rejects(
      startKafka({
        dataDir: `${dir}/.data`,
        serviceDir: "services/kafka",
        port: freePort(),
        version: "4.4.0",
        logger: quiet,
      }),
      (e: unknown) => e instanceof KafkaDataVersionError && /--upgrade-kafka/.test(e.message),
    );
    assert.deepEqual(await snapshot(dir), before, "nothing was written, moved or deleted");
  });
});

Deno.test("services: startKafka refuses a .data/kafka link and a non-empty unformatted data folder", async () => {
  await withTemp(async (dir) => {
    const victim = `${dir}/victim`;
    await Deno.mkdir(victim);
    await Deno.writeTextFile(`${victim}/keep`, "precious");
    await Deno.mkdir(`${dir}/a/.data`, { recursive: true });
    await Deno.symlink(victim, `${dir}/a/.data/kafka`);
    const before = await snapshot(victim);
    const port = freePort();
    const opts = { serviceDir: "services/kafka", port, logger: quiet };
    await assert.rejects(
      startKafka({ ...opts, dataDir: `${dir}/a/.data` }),
      (e: unknown) => e instanceof ServiceError && /symbolic link/.test(e.message),
    );
    assert.deepEqual(await snapshot(victim), before, "nothing written through the link");
    const p = kafkaPaths(`${dir}/b/.data`);
    await Deno.mkdir(p.data, { recursive: true });
    await Deno.writeTextFile(`${p.data}/stray.log`, "not kafka's");
    await assert.rejects(
      startKafka({ ...opts, dataDir: `${dir}/b/.data` }),
      (e: unknown) => e instanceof ServiceError && /never\s+deletes/.test(e.message),
    );
    assert.equal(await Deno.readTextFile(`${p.data}/stray.log`), "not kafka's");
  });
});

// --- Safe file-system steps ----------------------------------------------------------------

Deno.test("services: ensurePrivateDir creates 0700, tightens our 0755, refuses links and folders others may write", async () => {
  await withTemp(async (dir) => {
    const me = currentOwner();
    assert.equal(await ensurePrivateDir(`${dir}/new`, me), true);
    assert.equal(await mode(`${dir}/new`), 0o700);
    assert.equal(await ensurePrivateDir(`${dir}/new`, me), false, "second call verifies");
    await Deno.mkdir(`${dir}/old`);
    await Deno.chmod(`${dir}/old`, 0o755);
    await ensurePrivateDir(`${dir}/old`, me);
    assert.equal(await mode(`${dir}/old`), 0o700, "0755 from an older tickpipe is tightened");
    await Deno.mkdir(`${dir}/open`);
    await Deno.chmod(`${dir}/open`, 0o777);
    await assert.rejects(ensurePrivateDir(`${dir}/open`, me), /writable by other users/);
    assert.equal(await mode(`${dir}/open`), 0o777, "left as it was");
    await Deno.mkdir(`${dir}/target`);
    await Deno.chmod(`${dir}/target`, 0o755);
    await Deno.symlink(`${dir}/target`, `${dir}/link`);
    await assert.rejects(ensurePrivateDir(`${dir}/link`, me), /symbolic link/);
    assert.equal(await mode(`${dir}/target`), 0o755, "the link's target is untouched");
    await Deno.writeTextFile(`${dir}/file`, "x");
    await assert.rejects(ensurePrivateDir(`${dir}/file`, me), /not a folder/);
  });
});

Deno.test({
  name: "services: ensurePrivateDir refuses a folder owned by someone else (root)",
  ignore: !isRoot,
  async fn() {
    await withTemp(async (dir) => {
      await Deno.mkdir(`${dir}/theirs`, { mode: 0o700 });
      await Deno.chown(`${dir}/theirs`, 65534, 65534);
      await assert.rejects(ensurePrivateDir(`${dir}/theirs`, currentOwner()), /owned by uid 65534/);
    });
  },
});

Deno.test("services: writeNewFile never writes through a planted link (live or dangling) or over a file", async () => {
  await withTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/victim`, "original");
    await Deno.symlink(`${dir}/victim`, `${dir}/.pwfile`);
    await assert.rejects(writeNewFile(`${dir}/.pwfile`, "secret\n"), /refusing to write through/);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "original");
    await Deno.symlink(`${dir}/nothing-here`, `${dir}/dangling`);
    await assert.rejects(writeNewFile(`${dir}/dangling`, "secret\n"), /refusing/);
    await assert.rejects(Deno.lstat(`${dir}/nothing-here`), Deno.errors.NotFound);
    await writeNewFile(`${dir}/fresh`, "secret\n");
    assert.equal(await mode(`${dir}/fresh`), 0o600);
    await assert.rejects(writeNewFile(`${dir}/fresh`, "again"), /already exists/);
    assert.equal(await Deno.readTextFile(`${dir}/fresh`), "secret\n");
  });
});

Deno.test("services: replaceFile replaces a link at the path with a 0600 file, never writing its target", async () => {
  await withTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/victim`, "original");
    await Deno.symlink(`${dir}/victim`, `${dir}/server.properties`);
    await replaceFile(`${dir}/server.properties`, "a=1\n");
    const st = await Deno.lstat(`${dir}/server.properties`);
    assert.ok(st.isFile && !st.isSymlink);
    assert.equal(await Deno.readTextFile(`${dir}/server.properties`), "a=1\n");
    assert.equal(await mode(`${dir}/server.properties`), 0o600);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "original");
    await replaceFile(`${dir}/server.properties`, "a=2\n");
    assert.equal(await Deno.readTextFile(`${dir}/server.properties`), "a=2\n");
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["server.properties", "victim"], "no temp file left");
  });
});

Deno.test("services: verifySecurePath refuses a link, a foreign folder or a writable non-sticky folder on the way", async () => {
  await withTemp(async (base) => {
    const me = currentOwner();
    await Deno.mkdir(`${base}/a/b`, { recursive: true, mode: 0o700 });
    await Deno.chmod(`${base}/a`, 0o755);
    await Deno.chmod(`${base}/a/b`, 0o700);
    await verifySecurePath(`${base}/a/b`, me, base);
    await Deno.symlink(`${base}/a`, `${base}/l`);
    await assert.rejects(verifySecurePath(`${base}/l/b`, me, base), /a symbolic link/);
    await Deno.chmod(`${base}/a`, 0o777);
    await assert.rejects(verifySecurePath(`${base}/a/b`, me, base), /writable by other users/);
    await Deno.chmod(`${base}/a`, 0o1777);
    await verifySecurePath(`${base}/a/b`, me, base); // sticky, like /var/tmp
    await assert.rejects(verifySecurePath(`/etc/b`, me, base), /not inside/);
    await assert.rejects(verifySecurePath(`${base}/../etc`, me, base), /not inside/);
    if (isRoot) {
      await Deno.chmod(`${base}/a`, 0o755);
      await Deno.chown(`${base}/a`, 65534, 65534);
      await assert.rejects(verifySecurePath(`${base}/a/b`, me, base), /owned by uid 65534/);
    }
  });
});

// --- Where the PostgreSQL cluster goes (root: the server runs as postgres) ------------------

/** The /var/tmp path the old `services` used for `dataDir` (sha-256 prefix: predictable). */
async function oldPredictablePath(dataDir: string): Promise<string> {
  const id = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(dataDir));
  const hex = [...new Uint8Array(id)].slice(0, 6).map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  return `/var/tmp/tickpipe-${hex}`;
}

Deno.test({
  name:
    "services: root + a checkout postgres cannot enter: the cluster goes to a fresh 0700 postgres folder; a planted link at the old /var/tmp path is not followed",
  ignore: ROOT_REASON !== "",
  async fn() {
    const pgUser: Owner = await lookupOwner("postgres");
    await withTemp(async (dir) => {
      // dir is root's mode 0700 temp folder: postgres cannot enter it.
      const dataDir = `${dir}/.data`;
      await Deno.mkdir(dataDir);
      const victim = await Deno.makeTempDir({ prefix: "tickpipe-victim-" });
      await Deno.chmod(victim, 0o755);
      const planted = await oldPredictablePath(dataDir);
      await Deno.symlink(victim, planted);
      let root: string | undefined;
      try {
        const before = await snapshot(victim);
        const victimMode = await mode(victim);
        const p = await prepareCluster(dataDir, { owner: pgUser, logger: quiet });
        root = p.root;
        assert.ok(p.fresh);
        assert.ok(!p.root.startsWith(planted), `not under the planted path: ${p.root}`);
        assert.match(p.root, /^\/var\/tmp\/tickpipe-pg-[^/]+$/);
        const st = await Deno.lstat(p.root);
        assert.ok(st.isDirectory && !st.isSymlink);
        assert.equal(st.uid, pgUser.uid, "owned by postgres");
        assert.equal(await mode(p.root), 0o700);
        assert.equal(await Deno.readLink(`${dataDir}/pg`), p.root, ".data/pg links to it");
        assert.equal((await Deno.lstat(p.socket)).uid, pgUser.uid);
        assert.equal(await mode(p.socket), 0o700);
        assert.deepEqual(await snapshot(victim), before, "the planted link's target is untouched");
        assert.equal(await mode(victim), victimMode);
        assert.equal((await Deno.lstat(victim)).uid, 0, "not chowned to postgres");
        assert.equal(await Deno.readLink(planted), victim, "the planted link itself is left");
        // A second run reuses the verified folder.
        const again = await prepareCluster(dataDir, { owner: pgUser, logger: quiet });
        assert.equal(again.root, p.root);
        // The folder made unpredictable: two checkouts never share or guess a name.
        const other = await makePrivateTempDir("/var/tmp", {
          prefix: "tickpipe-pg-",
          owner: pgUser,
        });
        assert.notEqual(other, p.root);
        await Deno.remove(other);
      } finally {
        await Deno.remove(planted).catch(() => {});
        await Deno.remove(victim, { recursive: true }).catch(() => {});
        if (root) await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    });
  },
});

Deno.test({
  name:
    "services: root: a non-empty .data/pg postgres cannot enter is never deleted; a .data/pg link outside /var/tmp or to a folder postgres does not own is refused",
  ignore: ROOT_REASON !== "",
  async fn() {
    const pgUser = await lookupOwner("postgres");
    await withTemp(async (dir) => {
      const dataDir = `${dir}/.data`;
      await Deno.mkdir(`${dataDir}/pg/data`, { recursive: true });
      await Deno.writeTextFile(`${dataDir}/pg/data/PG_VERSION`, "15\n");
      const before = await snapshot(dataDir);
      await assert.rejects(
        prepareCluster(dataDir, { owner: pgUser, logger: quiet }),
        (e: unknown) =>
          e instanceof ServiceError && /never deletes a cluster folder/.test(e.message) &&
          e.message.includes(`${dataDir}/pg`),
      );
      assert.deepEqual(await snapshot(dataDir), before, "nothing removed or changed");

      // An empty .data/pg (nothing to lose) is replaced by the link.
      await Deno.remove(`${dataDir}/pg`, { recursive: true });
      await Deno.mkdir(`${dataDir}/pg`);
      const p = await prepareCluster(dataDir, { owner: pgUser, logger: quiet });
      try {
        assert.equal(await Deno.readLink(`${dataDir}/pg`), p.root);
      } finally {
        await Deno.remove(p.root, { recursive: true });
      }

      // Links that do not point at a private postgres folder in /var/tmp are refused.
      await Deno.remove(`${dataDir}/pg`);
      const elsewhere = `${dir}/elsewhere`;
      await Deno.mkdir(elsewhere, { mode: 0o700 });
      await Deno.chown(elsewhere, pgUser.uid, pgUser.gid);
      await Deno.symlink(elsewhere, `${dataDir}/pg`);
      await assert.rejects(prepareCluster(dataDir, { owner: pgUser, logger: quiet }), /not inside/);
      await Deno.remove(`${dataDir}/pg`);
      const rootOwned = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "tickpipe-test-" });
      try {
        await Deno.symlink(rootOwned, `${dataDir}/pg`);
        await assert.rejects(
          prepareCluster(dataDir, { owner: pgUser, logger: quiet }),
          /owned by uid 0/,
        );
      } finally {
        await Deno.remove(rootOwned, { recursive: true });
      }
    });
  },
});

Deno.test("services: a data folder with files but no cluster is refused, never deleted", async () => {
  await withTemp(async (dir) => {
    const me = currentOwner();
    const dataDir = `${dir}/.data`;
    await Deno.mkdir(`${dataDir}/pg/data`, { recursive: true, mode: 0o700 });
    await Deno.chmod(`${dataDir}/pg`, 0o700);
    await Deno.chmod(`${dataDir}/pg/data`, 0o700);
    await Deno.writeTextFile(`${dataDir}/pg/data/base.tar`, "a backup someone put here");
    const opts = { owner: me, logger: quiet, canReach: () => Promise.resolve(true) };
    await assert.rejects(prepareCluster(dataDir, opts), /no PG_VERSION\)\. tickpipe never deletes/);
    assert.equal(
      await Deno.readTextFile(`${dataDir}/pg/data/base.tar`),
      "a backup someone put here",
    );
    await Deno.remove(`${dataDir}/pg/data/base.tar`);
    assert.equal((await prepareCluster(dataDir, opts)).fresh, true, "an empty one is used");
    await Deno.writeTextFile(`${dataDir}/pg/data/PG_VERSION`, "15\n");
    assert.equal((await prepareCluster(dataDir, opts)).fresh, false, "a cluster is kept");
  });
});

Deno.test("services: every Kafka version's pom.xml is well-formed for Maven (no `--` in a comment)", async () => {
  // Maven's XML parser refuses "--" inside a comment (XML 1.0 §2.5): a pom that breaks this
  // makes `services up` fail for that version before anything is downloaded.
  for (const version of KAFKA_VERSIONS) {
    const path = new URL(`../../services/kafka/${version}/pom.xml`, import.meta.url);
    const xml = await Deno.readTextFile(path);
    assert.ok(xml.startsWith("<?xml "), `${version}: XML declaration first`);
    const comments = [...xml.matchAll(/<!--([\s\S]*?)-->/g)].map((m) => m[1]);
    assert.ok(comments.length >= 1, `${version}: the rationale comment is there`);
    for (const body of comments) {
      assert.ok(!body.includes("--"), `${version}: "--" inside a comment: ${body.slice(0, 200)}`);
      assert.ok(!body.endsWith("-"), `${version}: a comment ends with "-"`);
    }
    assert.equal(
      xml.replace(/<!--[\s\S]*?-->/g, "").includes("<!--"),
      false,
      `${version}: every comment is closed`,
    );
    assert.match(xml, new RegExp(`<version>${version.replaceAll(".", "\\.")}</version>`));
  }
});
