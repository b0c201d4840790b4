/**
 * The local PostgreSQL server: Debian's `postgresql` binaries, a
 * project-local cluster under `.data/pg` on 127.0.0.1:5432 with the
 * `tickpipe` database, unless DATABASE_URL already reaches a server.
 * Its folders are private and made without following links (see
 * {@linkcode prepareCluster}).
 * @module
 */

// @ts-types="npm:@types/pg@8.15.6"
import pg from "pg";
import { redact } from "../common/log.ts";
import type { Logger } from "../common/log.ts";
import { pidAlive, portOpen, run, ServiceError, tail } from "./_process.ts";
import {
  currentOwner,
  ensurePrivateDir,
  isEmptyDir,
  lookupOwner,
  makePrivateTempDir,
  type Owner,
  verifyPrivateDir,
  verifySecurePath,
  writeNewFile,
} from "./_fs.ts";

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

/** Where the local cluster lives. */
export interface PostgresPaths {
  /** The cluster folder: `.data/pg`, or the private folder in /var/tmp it links to. */
  root: string;
  /** PGDATA. */
  data: string;
  /** Server log. */
  log: string;
  /** Unix socket folder. */
  socket: string;
}

function pathsIn(root: string): PostgresPaths {
  return { root, data: `${root}/data`, log: `${root}/postgres.log`, socket: `${root}/run` };
}

/** Paths of the local cluster (`.data/pg`, or where that link points; nothing is verified). */
export async function postgresPaths(dataDir: string): Promise<PostgresPaths> {
  const link = `${dataDir}/pg`;
  try {
    return pathsIn(await Deno.readLink(link));
  } catch {
    return pathsIn(link); // not a link: the cluster is in .data/pg itself
  }
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
  // Created exclusively (mode 0644: the package reads it); an existing file is left as it is.
  await writeNewFile("/etc/postgresql-common/createcluster.conf", "create_main_cluster = false\n", {
    mode: 0o644,
  }).catch((e) => {
    if (!(e instanceof ServiceError)) throw e;
  });
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

/** Options for {@linkcode prepareCluster}. */
export interface PrepareClusterOptions {
  /** Who owns the cluster's files (`postgres` when root, else us). */
  owner: Owner;
  /** Logger. */
  logger: Logger;
  /**
   * Where a private folder is made when the owner cannot reach `.data`, and where a `.data/pg`
   * link made as root must point (default /var/tmp).
   */
  tmpDir?: string;
  /** True when the owner can enter `dir` (default: `runuser -u <owner> -- test -x dir` as root). */
  canReach?: (dir: string) => Promise<boolean>;
}

/** What {@linkcode prepareCluster} found or made. */
export interface PreparedCluster extends PostgresPaths {
  /** True when `data` holds no cluster yet (initdb must run). */
  fresh: boolean;
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function ownerCanReach(owner: Owner, dir: string): Promise<boolean> {
  if (owner.uid === Deno.uid()) return true;
  return (await run("runuser", ["-u", owner.name, "--", "test", "-x", dir])).code === 0;
}

/**
 * Places the local cluster's folder safely and says whether it needs initdb; starts nothing.
 *
 * The cluster lives in `.data/pg`, a private folder (mode 0700) owned by `owner`. As root the
 * server runs as `postgres`; when that user cannot enter `.data` (a checkout under /root), the
 * cluster lives in a fresh folder with an unpredictable name in /var/tmp (mode 0700, owned by
 * postgres) and `.data/pg` links to it. An existing link is followed only after its target
 * passed {@linkcode verifySecurePath} (as root: inside /var/tmp, no link or foreign folder on the
 * way, private) or, when not root, {@linkcode verifyPrivateDir} (our own folder). Nothing that holds files is ever deleted: a non-empty
 * `.data/pg` the owner cannot reach, or a data folder with files but no cluster, is refused
 * with a ServiceError that says what to do.
 */
export async function prepareCluster(
  dataDir: string,
  options: PrepareClusterOptions,
): Promise<PreparedCluster> {
  const { owner, logger } = options;
  const canReach = options.canReach ?? ((dir: string) => ownerCanReach(owner, dir));
  const link = `${dataDir}/pg`;
  const st = await lstatOrNull(link);
  let root: string;
  if (st?.isSymlink) {
    root = await Deno.readLink(link);
    if (!root.startsWith("/")) {
      throw new ServiceError(
        `${link} links to the relative path "${root}": expected an absolute path (a folder ` +
          `tickpipe made in /var/tmp); remove the link to let services place the cluster again`,
      );
    }
    if (owner.uid === Deno.uid()) {
      await verifyPrivateDir(root, owner); // our own link in our own .data, to our own folder
    } else {
      await verifySecurePath(root, owner, options.tmpDir ?? "/var/tmp");
    }
  } else if (!(await canReach(dataDir))) {
    if (st !== null) {
      if (!st.isDirectory || !(await isEmptyDir(link))) {
        throw new ServiceError(
          `${link} exists and is not empty, but the ${owner.name} user cannot enter ${dataDir}, ` +
            `so the server could not use it. tickpipe never deletes a cluster folder: move the ` +
            `checkout where ${owner.name} can enter it (or let it traverse the parents), or move ` +
            `${link} away yourself and run again`,
        );
      }
      await Deno.remove(link); // an empty folder (not recursive: fails if anything appeared)
    }
    root = await makePrivateTempDir(options.tmpDir ?? "/var/tmp", {
      prefix: "tickpipe-pg-",
      owner,
    });
    // `ln -sT` (Deno.symlink needs unrestricted read/write): fails if the name was taken.
    const ln = await run("ln", ["-sT", root, link]);
    if (ln.code !== 0) {
      throw new ServiceError(`Cannot link ${link} to ${root}: ${ln.stderr.trim()}`);
    }
    logger.info(`the ${owner.name} user cannot enter .data: cluster placed in a private folder`, {
      dir: root,
      link,
    });
  } else {
    await ensurePrivateDir(link, owner);
    root = link;
  }
  const p = pathsIn(root);
  await ensurePrivateDir(p.socket, owner);
  const data = await lstatOrNull(p.data);
  if (data === null) return { ...p, fresh: true }; // initdb creates it (mode 0700)
  await verifyPrivateDir(p.data, owner);
  const version = await lstatOrNull(`${p.data}/PG_VERSION`);
  if (version?.isFile) return { ...p, fresh: false };
  if (await isEmptyDir(p.data)) return { ...p, fresh: true };
  throw new ServiceError(
    `${p.data} holds files but no PostgreSQL cluster (no PG_VERSION). tickpipe never deletes ` +
      `it: move it away (or restore the cluster) and run again`,
  );
}

/** The owner of the cluster's files: `postgres` when root (initdb refuses root), else us. */
export async function clusterOwner(): Promise<Owner> {
  return isRoot() ? await lookupOwner("postgres") : currentOwner();
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
    const owner = await clusterOwner();
    const p = await prepareCluster(options.dataDir, { owner, logger: log });
    if (p.fresh) {
      // A new name every time, created exclusively: nothing is ever written through a link.
      const pwfile = `${p.root}/.pwfile-${crypto.randomUUID()}`;
      await writeNewFile(pwfile, password + "\n", { owner });
      let r;
      try {
        r = await runPg(`${bin}/initdb`, [
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
      } finally {
        await Deno.remove(pwfile).catch(() => {});
      }
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
