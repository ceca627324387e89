/**
 * Single-pass file I/O for model seeding: every byte is read once, hashed (node:crypto SHA-256)
 * and written in the same pass, and files are fsynced before they count as written. Reads use
 * the one chunk size and result shape of src/hash.ts.
 *
 * copyHashed overlaps the read of the next chunk and the write of the previous one with hashing
 * the current chunk, and flushes to disk in the background (see there).
 */
import { createHash } from "node:crypto";
import { CHUNK_SIZE, type HashResult, readFull } from "./hash.ts";
import { throwIfAborted } from "./errors.ts";
import { writeAll } from "./fsutil.ts";

/**
 * copyHashed starts a background fdatasync after this many bytes written since the last one;
 * 0 (the default): none, one fdatasync at the end. Measured with the bench/ suite (cold cache,
 * 1 GiB): a flush every 64 MiB made the copy 1.3-2x slower (writes wait for pages under
 * writeback), so it is off; the fsync before the file counts as written stays.
 */
export const FLUSH_EVERY = 0;

export interface IoOptions {
  signal?: AbortSignal;
  /** Called with the number of bytes just processed (for progress). */
  onBytes?: (n: number) => void;
  chunkSize?: number;
}

/**
 * Copies `src` to `dst` (created exclusively; never overwrites), hashing in the same pass,
 * then fsyncs `dst`. Returns the SHA-256 and size of what was written.
 *
 * A three-buffer pipeline: while this thread hashes chunk N, Deno's I/O threads read chunk N+1
 * and write chunk N-1, so hashing (the one part that cannot be split: SHA-256 is sequential)
 * overlaps with the copying. With `flushEvery` > 0 an fdatasync is started in the background
 * every that many bytes (one at a time); off by default (FLUSH_EVERY: measured slower). Each
 * source byte is read once, and the hash covers the very buffers handed to write(2). The bench/
 * suite (case models) measures it against `cp -r` and `cp -r` + `sync`.
 * On error or abort the partial `dst` is left for the caller's staging cleanup (after the
 * in-flight reads and writes have settled).
 */
export async function copyHashed(
  src: string,
  dst: string,
  opts: IoOptions & { mode?: number; flushEvery?: number } = {},
): Promise<HashResult> {
  const size = opts.chunkSize ?? CHUNK_SIZE;
  const flushEvery = opts.flushEvery ?? FLUSH_EVERY;
  using inF = await Deno.open(src, { read: true });
  using outF = await Deno.open(dst, { write: true, createNew: true, mode: opts.mode ?? 0o644 });
  const hash = createHash("sha256");
  const bufs = [new Uint8Array(size), new Uint8Array(size), new Uint8Array(size)];
  let total = 0;
  let writing: Promise<unknown> = Promise.resolve();
  let flushing: Promise<unknown> | undefined;
  let unflushed = 0;
  let reading = handled(readFull(inF, bufs[0]));
  try {
    for (let i = 0;; i++) {
      const n = await reading;
      if (n === 0) break;
      throwIfAborted(opts.signal);
      const cur = bufs[i % 3].subarray(0, n);
      // bufs[(i + 1) % 3] held chunk i - 2, whose write ended before chunk i - 1's began.
      reading = n < size ? Promise.resolve(0) : handled(readFull(inF, bufs[(i + 1) % 3]));
      hash.update(cur);
      await writing;
      writing = handled(writeAll(outF, cur));
      total += n;
      unflushed += n;
      if (flushEvery > 0 && unflushed >= flushEvery && flushing === undefined) {
        unflushed = 0;
        flushing = handled(outF.syncData().then(() => (flushing = undefined)));
      }
      opts.onBytes?.(n);
    }
    await writing;
    await flushing;
  } catch (e) {
    // Let in-flight operations end (their errors are secondary) before the files close.
    await Promise.allSettled([reading, writing, flushing]);
    throw e;
  }
  await outF.syncData();
  return { sha256: hash.digest("hex"), size: total };
}

/**
 * Marks a promise as handled (it is awaited later, possibly after it rejects: without this a
 * rejection while another operation is awaited would count as unhandled), and returns it.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/**
 * Writes a stream of chunks (e.g. one tar entry) to `dst` (created exclusively), hashing in the
 * same pass, coalescing small chunks into large writes, then fsyncs. Returns the SHA-256 and size.
 */
export async function writeStreamHashed(
  chunks: AsyncIterable<Uint8Array>,
  dst: string,
  opts: IoOptions & { mode?: number } = {},
): Promise<HashResult> {
  const hash = createHash("sha256");
  const limit = 1024 * 1024;
  using outF = await Deno.open(dst, { write: true, createNew: true, mode: opts.mode ?? 0o644 });
  let total = 0;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pendingBytes === 0) return;
    const buf = pending.length === 1 ? pending[0] : concatBytes(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await writeAll(outF, buf);
  };
  for await (const chunk of chunks) {
    throwIfAborted(opts.signal);
    hash.update(chunk);
    total += chunk.length;
    // The producer may reuse its buffer: keep a copy only when coalescing.
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= limit) await flush();
  }
  await flush();
  await outF.syncData();
  return { sha256: hash.digest("hex"), size: total };
}

/** The parts joined into one buffer (`n`: their total length, when known). */
export function concatBytes(
  parts: readonly Uint8Array[],
  n = parts.reduce((s, p) => s + p.length, 0),
): Uint8Array {
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
