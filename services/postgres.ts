/**
 * The local PostgreSQL server: Debian's `postgresql` binaries, a
 * project-local cluster under `.data/pg` on 127.0.0.1:5432 with the
 * `tickpipe` database, unless DATABASE_URL already reaches a server.
 * @module
 */

// @ts-types="npm:@types/pg@8.15.6"
import pg from "pg";
import { redact } from "../common/log.ts";
import type { Logger } from "../common/log.ts";
import { pidAlive, portOpen, run, ServiceError, tail } from "./_process.ts";

/** Options for the local PostgreSQL server. */
export interface PostgresServiceOptions {
  /** Absolute `.data` folder. */
  dataDir: string;
  /** The configured DATABASE_URL (database, user, password and port are taken from it). */
  databaseUrl: string;
  /** Logger. */
  logger: Logger;
  /** Install Debian's postgresql with apt-get when missing and root (default true). */
  install?: boolean;
}

/** Paths of the local cluster (following `.data/pg` when it links elsewhere). */
export async function postgresPaths(
  dataDir: string,
): Promise<{ root: string; data: string; log: string; socket: string }> {
  let root = `${dataDir}/pg`;
  try {
    root = await Deno.readLink(root);
  } catch {
    // not a link: the cluster is in .data/pg itself
  }
  return { root, data: `${root}/data`, log: `${root}/postgres.log`, socket: `${root}/run` };
}

/** Tries a query against `url`; returns undefined on success or the error message. */
export async function probeDatabase(url: string, timeoutMs = 3000): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (e) {
    return (e as Error).message || String(e);
  } finally {
    await client.end().catch(() => {});
  }
}

/** The newest installed Debian PostgreSQL bin folder, if any. */
export async function findPostgresBin(): Promise<string | undefined> {
  const versions: number[] = [];
  try {
    for await (const e of Deno.readDir("/usr/lib/postgresql")) {
      if (/^\d+$/.test(e.name)) versions.push(Number(e.name));
    }
  } catch {
    return undefined;
  }
  for (const v of versions.sort((a, b) => b - a)) {
    const bin = `/usr/lib/postgresql/${v}/bin`;
    try {
      await Deno.stat(`${bin}/initdb`);
      await Deno.stat(`${bin}/pg_ctl`);
      return bin;
    } catch {
      // try the next version
    }
  }
  return undefined;
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

async function installPostgres(log: Logger): Promise<void> {
  log.info("PostgreSQL server binaries are missing: installing Debian's postgresql with apt-get");
  // Do not let the package create and start its own cluster on 5432.
  await Deno.mkdir("/etc/postgresql-common", { recursive: true });
  try {
    await Deno.stat("/etc/postgresql-common/createcluster.conf");
  } catch {
    await Deno.writeTextFile(
      "/etc/postgresql-common/createcluster.conf",
      "create_main_cluster = false\n",
    );
  }
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const up = await run("apt-get", ["update", "-q"], { env });
  if (up.code !== 0) throw new ServiceError(`apt-get update failed: ${up.stderr.trim()}`);
  const r = await run("apt-get", ["install", "-y", "-q", "--no-install-recommends", "postgresql"], {
    env,
  });
  if (r.code !== 0) {
    throw new ServiceError(
      `apt-get install postgresql failed: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  }
}

/**
 * As root the server runs as `postgres`, which must be able to reach
 * `.data/pg`. When the checkout sits under a folder it cannot traverse
 * (e.g. /root), the cluster lives in /var/tmp and `.data/pg` links to it.
 */
async function ensureReachableByPostgres(dataDir: string, log: Logger): Promise<void> {
  if (!isRoot()) return;
  const link = `${dataDir}/pg`;
  if ((await Deno.lstat(link).catch(() => null))?.isSymlink) return; // placed earlier
  const ok = await run("runuser", ["-u", "postgres", "--", "test", "-x", dataDir]);
  if (ok.code === 0) return;
  const id = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(dataDir));
  const hex = [...new Uint8Array(id)].slice(0, 6).map((b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
  const target = `/var/tmp/tickpipe-${hex}/pg`;
  await Deno.mkdir(target, { recursive: true });
  await Deno.remove(link, { recursive: true }).catch(() => {});
  const ln = await run("ln", ["-s", target, link]);
  if (ln.code !== 0) throw new ServiceError(`Cannot link ${link} to ${target}: ${ln.stderr}`);
  log.info("the postgres user cannot reach .data: cluster placed in /var/tmp", { target, link });
}

/** Runs a PostgreSQL binary as the `postgres` user when we are root (initdb and postgres refuse root). */
async function runPg(bin: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = isRoot()
    ? await run("runuser", ["-u", "postgres", "--", bin, ...args], { cwd: "/" })
    : await run(bin, args);
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

/** Starts the local cluster unless DATABASE_URL already reaches a server. */
export async function startPostgres(
  options: PostgresServiceOptions,
): Promise<"started" | "running"> {
  const url = new URL(options.databaseUrl);
  const log = options.logger;
  if ((await probeDatabase(options.databaseUrl)) === undefined) return "running";
  const host = url.hostname;
  const port = Number(url.port || "5432");
  if (host !== "127.0.0.1" && host !== "localhost") {
    throw new ServiceError(
      `DATABASE_URL=${redact(options.databaseUrl)} does not answer and is not local, so no local ` +
        `server is started for it: start that server, or unset DATABASE_URL to use the local one`,
    );
  }
  const user = decodeURIComponent(url.username || "postgres");
  const password = decodeURIComponent(url.password || "postgres");
  const database = decodeURIComponent(url.pathname.slice(1));
  if (!(await portOpen("127.0.0.1", port))) {
    let bin = await findPostgresBin();
    if (!bin) {
      if (options.install === false || !isRoot()) {
        throw new ServiceError(
          "PostgreSQL server binaries were not found under /usr/lib/postgresql: install Debian's " +
            "postgresql package (sudo apt-get install postgresql), or set DATABASE_URL to a running server",
        );
      }
      await installPostgres(log);
      bin = await findPostgresBin();
      if (!bin) {
        throw new ServiceError(
          "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql",
        );
      }
    }
    await ensureReachableByPostgres(options.dataDir, log);
    const p = await postgresPaths(options.dataDir);
    await Deno.mkdir(p.socket, { recursive: true });
    let fresh = false;
    try {
      await Deno.stat(`${p.data}/PG_VERSION`);
    } catch {
      fresh = true;
      await Deno.mkdir(p.data, { recursive: true });
    }
    if (isRoot()) await run("chown", ["-R", "postgres:postgres", p.root]);
    if (fresh) {
      const pwfile = `${p.root}/.pwfile`;
      await Deno.writeTextFile(pwfile, password + "\n", { mode: 0o600 });
      if (isRoot()) await run("chown", ["postgres:postgres", pwfile]);
      const r = await runPg(`${bin}/initdb`, [
        "-D",
        p.data,
        "-U",
        user,
        `--pwfile=${pwfile}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
      ]);
      await Deno.remove(pwfile).catch(() => {});
      if (r.code !== 0) throw new ServiceError(`initdb failed in ${p.data}: ${r.out}`);
      log.info("initialized PostgreSQL cluster", { dir: p.data });
    }
    const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${p.socket} -c max_connections=200`;
    const r = await runPg(`${bin}/pg_ctl`, [
      "-D",
      p.data,
      "-l",
      p.log,
      "-o",
      opts,
      "-w",
      "-t",
      "60",
      "start",
    ]);
    if (r.code !== 0) {
      throw new ServiceError(
        `pg_ctl start failed: ${r.out}\nlast lines of ${p.log}:\n${await tail(p.log)}`,
      );
    }
    log.info("started PostgreSQL", { port, dir: p.data });
  }
  // Create the database when missing (connect to the maintenance database).
  const admin = new URL(options.databaseUrl);
  admin.pathname = "/postgres";
  const client = new pg.Client({
    connectionString: admin.toString(),
    connectionTimeoutMillis: 5000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [
      database,
    ]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
      log.info("created database", { database });
    }
  } catch (e) {
    throw new ServiceError(
      `PostgreSQL answers on port ${port} but DATABASE_URL=${
        redact(options.databaseUrl)
      } cannot be used: ` +
        `${
          (e as Error).message
        }. If another server owns that port, stop it or set DATABASE_URL to it`,
      { cause: e },
    );
  } finally {
    await client.end().catch(() => {});
  }
  const err = await probeDatabase(options.databaseUrl);
  if (err) {
    throw new ServiceError(`DATABASE_URL=${redact(options.databaseUrl)} still fails: ${err}`);
  }
  return "started";
}

/** The local cluster's postmaster pid, if running. */
export async function postgresPid(dataDir: string): Promise<number | undefined> {
  try {
    const first =
      (await Deno.readTextFile(`${(await postgresPaths(dataDir)).data}/postmaster.pid`)).split(
        "\n",
      )[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 && (await pidAlive(pid)) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Stops the local cluster (fast shutdown); returns false when it was not running. */
export async function stopPostgres(dataDir: string): Promise<boolean> {
  if ((await postgresPid(dataDir)) === undefined) return false;
  const bin = await findPostgresBin();
  if (!bin) return false;
  const r = await runPg(`${bin}/pg_ctl`, [
    "-D",
    (await postgresPaths(dataDir)).data,
    "-m",
    "fast",
    "-w",
    "stop",
  ]);
  if (r.code !== 0) throw new ServiceError(`pg_ctl stop failed: ${r.out}`);
  return true;
}
