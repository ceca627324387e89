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
