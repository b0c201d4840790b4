/**
 * Opens Deno KV at an explicit path, creating its folder.
 * @module
 */

/** Opens the KV database at `path` (never the default location), creating the parent folder. */
export async function openKv(path: string): Promise<Deno.Kv> {
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  return await Deno.openKv(path);
}
