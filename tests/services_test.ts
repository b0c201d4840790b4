// `services` for real: a bad KAFKA_VERSION exits 2 naming it and the supported versions; as
// root, a private PostgreSQL cluster is initialised (initdb as postgres, password from a file
// created exclusively) and started on a free port without following a `.pwfile` link planted
// in its folder, then stopped. Uses private temp folders only, never the shared services.
import assert from "node:assert/strict";
// @ts-types="npm:@types/pg@8.15.6"
import pg from "pg";
import { KAFKA_VERSIONS } from "../services/kafka.ts";
import { findPostgresBin, startPostgres, stopPostgres } from "../services/postgres.ts";
import { lookupOwner } from "../services/_fs.ts";
import { createLogger } from "../common/log.ts";
import { runCli } from "./_helpers/env.ts";

const quiet = createLogger("test", { level: "error" });

Deno.test("services: a bad KAFKA_VERSION exits 2 with a message naming it and the supported versions", async () => {
  for (const action of ["status", "up"]) {
    const r = await runCli("services", ["services", action], {
      env: { KAFKA_VERSION: "4.0-rc" },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /KAFKA_VERSION="4\.0-rc" is not a supported Kafka version/);
    for (const v of KAFKA_VERSIONS) assert.ok(r.stderr.includes(v), r.stderr);
  }
});

const bin = await findPostgresBin();
const reason = Deno.uid() !== 0
  ? "not root: the test hands the cluster to the postgres user"
  : bin === undefined
  ? "Debian's postgresql is not installed (no initdb under /usr/lib/postgresql)"
  : "";
if (reason) console.log(`services: skipping the private PostgreSQL cluster test: ${reason}`);

Deno.test({
  name:
    "services: as root a private cluster starts and accepts its password; a .pwfile link planted in its folder is not followed",
  ignore: reason !== "",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const pgUser = await lookupOwner("postgres");
    // A folder postgres can enter (0755), so the cluster is made in .data/pg itself.
    const dir = await Deno.makeTempDir({ prefix: "tickpipe-svc-pg-" });
    await Deno.chmod(dir, 0o755);
    const dataDir = `${dir}/.data`;
    const victim = await Deno.makeTempFile({ prefix: "tickpipe-victim-" });
    await Deno.writeTextFile(victim, "root's file\n");
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const password = `pw-${crypto.randomUUID()}`;
    const url = `postgres://postgres:${password}@127.0.0.1:${port}/svc_test`;
    try {
      await Deno.mkdir(`${dataDir}/pg`, { recursive: true, mode: 0o700 });
      await Deno.chmod(`${dataDir}/pg`, 0o700);
      await Deno.chmod(dataDir, 0o755);
      await Deno.chown(`${dataDir}/pg`, pgUser.uid, pgUser.gid);
      await Deno.symlink(victim, `${dataDir}/pg/.pwfile`); // the old fixed name
      const r = await startPostgres({ dataDir, databaseUrl: url, logger: quiet, install: false });
      assert.equal(r, "started");
      assert.equal(await Deno.readTextFile(victim), "root's file\n", "the link was not followed");
      assert.equal((await Deno.lstat(victim)).uid, 0, "the link's target was not chowned");
      assert.equal(await Deno.readLink(`${dataDir}/pg/.pwfile`), victim, "the link is left");
      const left = [];
      for await (const e of Deno.readDir(`${dataDir}/pg`)) {
        if (e.name.startsWith(".pwfile-")) left.push(e.name);
      }
      assert.deepEqual(left, [], "the password file is removed after initdb");
      const st = await Deno.lstat(`${dataDir}/pg/data`);
      assert.equal(st.uid, pgUser.uid);
      assert.equal((st.mode ?? 0) & 0o777, 0o700);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows } = await client.query("SELECT current_database() AS db");
        assert.equal(rows[0].db, "svc_test", "the database was created and the password works");
      } finally {
        await client.end();
      }
      const wrong = new pg.Client({ connectionString: url.replace(password, "wrong") });
      await assert.rejects(wrong.connect(), /password authentication failed/);
      await wrong.end().catch(() => {});
    } finally {
      await stopPostgres(dataDir).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(victim).catch(() => {});
    }
  },
});
