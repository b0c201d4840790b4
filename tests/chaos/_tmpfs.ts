/**
 * Small tmpfs mounts for the disk-full scenarios (12, 13): a filesystem that really runs out of
 * space (ENOSPC), which needs root; the scenarios skip with the reason when it cannot be had.
 * @module
 */

async function run(cmd: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    return out.success ? null : new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Why a small tmpfs cannot be mounted here, or null when it can (tried once on a temp dir). */
export async function tmpfsUnavailable(): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-tmpfs-probe-" });
  try {
    const err = await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]);
    if (err !== null) return `cannot mount a tmpfs (needs root): ${err}`;
    return await run("umount", [dir]);
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

/** Mounts a tmpfs of `size` (e.g. "512k") at `dir`, creating it; throws when that fails. */
export async function mountTmpfs(dir: string, size: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const err = await run("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  if (err !== null) throw new Error(`Cannot mount a ${size} tmpfs at ${dir}: ${err}`);
}

/** Unmounts `dir` (best effort: a failure is returned, not thrown). */
export function umount(dir: string): Promise<string | null> {
  return run("umount", [dir]);
}
