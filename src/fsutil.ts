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

/** Writes all of `data` to an open file (a write may take less than it is given). */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}
