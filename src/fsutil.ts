/** Small filesystem helpers shared by the steps. */

/** Whether something exists at `path` (following links). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** fsyncs a directory so that renames and new entries in it survive a crash. */
export async function fsyncDir(path: string): Promise<void> {
  using d = await Deno.open(path, { read: true });
  await d.sync();
}
