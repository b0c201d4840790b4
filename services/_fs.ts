/**
 * Safe file-system steps for `services`, which often runs as root and may place a cluster in a
 * shared folder (/var/tmp): private folders are created fresh with mode 0700 (or verified: a
 * real folder, not a link, owned by the expected user, no access for others), files are created
 * exclusively with mode 0600 (never written through an existing name), ownership changes use
 * `chown -h` on one path at a time (never recursive), and nothing here deletes a folder that
 * holds anything.
 * @module
 */

import { run, ServiceError } from "./_process.ts";

/** A user the services' files belong to (`postgres` when running as root, else ourselves). */
export interface Owner {
  /** User name (for `chown -h`). */
  name: string;
  /** Numeric user id. */
  uid: number;
  /** Numeric group id. */
  gid: number;
}

/** The user this process runs as. */
export function currentOwner(): Owner {
  const uid = Deno.uid() ?? -1;
  return { name: String(uid), uid, gid: Deno.gid() ?? -1 };
}

/** Looks up a local user by name with `id` (e.g. `postgres`). */
export async function lookupOwner(name: string): Promise<Owner> {
  const [u, g] = await Promise.all([run("id", ["-u", name]), run("id", ["-g", name])]);
  const uid = Number(u.stdout.trim());
  const gid = Number(g.stdout.trim());
  if (u.code !== 0 || g.code !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new ServiceError(`The local user "${name}" was not found (id -u ${name} failed)`);
  }
  return { name, uid, gid };
}

function modeOf(info: Deno.FileInfo): number {
  return (info.mode ?? 0) & 0o7777;
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

/**
 * Checks that `path` is a real folder (not a symbolic link, no link anywhere on its path) owned
 * by `owner`, writable by nobody else. A folder that others may only read or enter (e.g. 0755
 * from an older tickpipe) is tightened to 0700; anything else is refused with a ServiceError.
 */
export async function verifyPrivateDir(path: string, owner: Owner): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    throw new ServiceError(`Cannot inspect ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (info.isSymlink) {
    throw new ServiceError(
      `${path} is a symbolic link: refusing to follow it (services only uses folders it created ` +
        `or verified); remove the link if it is yours`,
    );
  }
  if (!info.isDirectory) {
    throw new ServiceError(`${path} exists and is not a folder: refusing to use it`);
  }
  if (info.uid !== owner.uid) {
    throw new ServiceError(
      `${path} is owned by uid ${info.uid}, expected ${owner.name} (uid ${owner.uid}): ` +
        `refusing to use a folder someone else controls`,
    );
  }
  const mode = modeOf(info);
  if ((mode & 0o022) !== 0) {
    throw new ServiceError(
      `${path} is writable by other users (mode ${octal(mode)}): refusing to use it`,
    );
  }
  if ((mode & 0o077) !== 0) await Deno.chmod(path, 0o700); // 0755 from an older tickpipe
}

/**
 * Checks a folder outside our checkout, `path`, below the shared folder `base` (e.g. /var/tmp):
 * `base` and every folder from it down to `path` must be a real folder (not a link) owned by
 * root, us or `owner`, writable by nobody else unless sticky (like /var/tmp), so no other user
 * can swap any part of the path; then `path` itself must pass {@linkcode verifyPrivateDir}.
 */
export async function verifySecurePath(path: string, owner: Owner, base: string): Promise<void> {
  if (!path.startsWith(`${base}/`) || path.split("/").includes("..")) {
    throw new ServiceError(
      `${path} is not inside ${base}, where services places private folders: refusing to use it`,
    );
  }
  const me = Deno.uid();
  let dir = base;
  const below = path.slice(base.length + 1).split("/").filter((s) => s !== "");
  for (let i = 0; i < below.length; i++) {
    const info = await Deno.lstat(dir);
    if (info.isSymlink || !info.isDirectory) {
      throw new ServiceError(
        `${dir} (on the path to ${path}) is ${
          info.isSymlink ? "a symbolic link" : "not a folder"
        }: refusing to use ${path}`,
      );
    }
    if (info.uid !== 0 && info.uid !== owner.uid && info.uid !== me) {
      throw new ServiceError(
        `${dir} (on the path to ${path}) is owned by uid ${info.uid}: refusing to use ${path}`,
      );
    }
    const mode = modeOf(info);
    if ((mode & 0o022) !== 0 && (mode & 0o1000) === 0) {
      throw new ServiceError(
        `${dir} (on the path to ${path}) is writable by other users (mode ${
          octal(mode)
        }) and not sticky: refusing to use ${path}`,
      );
    }
    dir += `/${below[i]}`;
  }
  await verifyPrivateDir(path, owner);
}

/**
 * Creates folder `path` (its parent must exist) with mode 0700, owned by `owner` (`chown -h`
 * when that is not us), or verifies an existing one with {@linkcode verifyPrivateDir}.
 * Returns whether it was created.
 */
export async function ensurePrivateDir(path: string, owner: Owner): Promise<boolean> {
  try {
    await Deno.mkdir(path, { mode: 0o700 }); // not recursive: fails on any existing name
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    await verifyPrivateDir(path, owner);
    return false;
  }
  await Deno.chmod(path, 0o700); // mkdir applied the umask: make the mode exactly 0700
  await chownNoFollow(path, owner);
  await verifyPrivateDir(path, owner);
  return true;
}

/**
 * Creates a fresh folder with an unpredictable name in `parent` (mode 0700), handed to `owner`
 * with `chown -h`; returns its path.
 */
export async function makePrivateTempDir(
  parent: string,
  options: { prefix: string; owner: Owner },
): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: parent, prefix: options.prefix });
  const info = await Deno.lstat(dir);
  if (info.isSymlink || !info.isDirectory || (modeOf(info) & 0o077) !== 0) {
    throw new ServiceError(`The new folder ${dir} is not a private folder: refusing to use it`);
  }
  await chownNoFollow(dir, options.owner);
  await verifyPrivateDir(dir, options.owner);
  return dir;
}

/** Changes the owner of `path` itself (`chown -h`, never through a link, never recursive). */
export async function chownNoFollow(path: string, owner: Owner): Promise<void> {
  const me = currentOwner();
  if (owner.uid === me.uid && owner.gid === me.gid) return;
  const r = await run("chown", ["-h", `${owner.uid}:${owner.gid}`, path]);
  if (r.code !== 0) {
    throw new ServiceError(`chown -h ${owner.name} ${path} failed: ${r.stderr.trim()}`);
  }
}

/**
 * Writes `data` to a new file `path` (mode 0600): fails when any file or link of that name
 * already exists, so nothing is ever written through a planted link.
 */
export async function writeNewFile(
  path: string,
  data: string,
  options: { owner?: Owner; mode?: number } = {},
): Promise<void> {
  try {
    await Deno.writeTextFile(path, data, { createNew: true, mode: options.mode ?? 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new ServiceError(
        `${path} already exists (a leftover or a planted link): refusing to write through it`,
        { cause: e },
      );
    }
    throw e;
  }
  await Deno.chmod(path, options.mode ?? 0o600);
  if (options.owner) await chownNoFollow(path, options.owner);
}

/**
 * Replaces file `path` with `data` (mode 0600): writes a new file with an unpredictable name
 * next to it, then renames it over `path`. A link at `path` is replaced, never followed.
 */
export async function replaceFile(path: string, data: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  const tmp = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.${
    crypto.randomUUID().slice(0, 8)
  }.tmp`;
  await writeNewFile(tmp, data);
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** True when folder `path` holds no entries (false when it holds any, or is not a folder). */
export async function isEmptyDir(path: string): Promise<boolean> {
  for await (const _ of Deno.readDir(path)) return false;
  return true;
}
