/**
 * Single-pass file I/O for model seeding: every byte is read once, hashed (node:crypto SHA-256)
 * and written in the same pass, and files are fsynced before they count as written.
 *
 * hashFile overlaps the next (async) read with hashing the current chunk; copyHashed uses
 * synchronous calls (see there why).
 */
import { createHash } from "node:crypto";
import { InterruptedError } from "../errors.ts";

/** Chunk size for file reads: large chunks keep syscalls and hash-update overhead negligible. */
export const CHUNK_SIZE = 8 * 1024 * 1024;

export interface IoOptions {
  signal?: AbortSignal;
  /** Called with the number of bytes just processed (for progress). */
  onBytes?: (n: number) => void;
  chunkSize?: number;
}

export interface HashResult {
  bytes: number;
  /** Lower-case hex SHA-256. */
  sha256: string;
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError();
}

async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await f.write(data.subarray(off));
}

/** Reads until the buffer is full or EOF; returns the byte count (0 at EOF). */
async function readFull(f: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const r = await f.read(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n;
}

/**
 * Copies `src` to `dst` (created exclusively; never overwrites), hashing in the same pass,
 * then fsyncs `dst`. Returns the byte count and SHA-256 of what was written.
 * Synchronous read/write calls on large chunks: Deno's async file ops cost about 3x more per
 * byte here, and a hashing worker on shared buffers measured no faster on a 2-core host (the
 * flush to disk dominates). It awaits a timer every few chunks so signals and progress run.
 * On error or abort the partial `dst` is left for the caller's staging cleanup.
 */
export async function copyHashed(
  src: string,
  dst: string,
  opts: IoOptions & { mode?: number } = {},
): Promise<HashResult> {
  const size = opts.chunkSize ?? CHUNK_SIZE;
  using inF = await Deno.open(src, { read: true });
  using outF = await Deno.open(dst, { write: true, createNew: true, mode: opts.mode ?? 0o644 });
  const hash = createHash("sha256");
  const buf = new Uint8Array(size);
  let total = 0;
  for (let k = 0;; k++) {
    checkAbort(opts.signal);
    await yieldNow(k);
    const n = readFullSync(inF, buf);
    if (n === 0) break;
    const cur = buf.subarray(0, n);
    hash.update(cur);
    writeAllSync(outF, cur);
    total += n;
    opts.onBytes?.(n);
  }
  await outF.syncData();
  return { bytes: total, sha256: hash.digest("hex") };
}

// Everything runs on this thread: let timers and signals in now and then.
function yieldNow(k: number): Promise<void> | void {
  if (k % 8 === 7) return new Promise((r) => setTimeout(r, 0));
}

function readFullSync(f: Deno.FsFile, buf: Uint8Array): number {
  let n = 0;
  while (n < buf.length) {
    const r = f.readSync(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n;
}

function writeAllSync(f: Deno.FsFile, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += f.writeSync(data.subarray(off));
}

/** Hashes a file in one streaming read. */
export async function hashFile(path: string, opts: IoOptions = {}): Promise<HashResult> {
  const size = opts.chunkSize ?? CHUNK_SIZE;
  const hash = createHash("sha256");
  const bufs = [new Uint8Array(size), new Uint8Array(size)];
  using f = await Deno.open(path, { read: true });
  let total = 0;
  let i = 0;
  let n = await readFull(f, bufs[0]);
  while (n > 0) {
    checkAbort(opts.signal);
    const next = readFull(f, bufs[1 - i]);
    hash.update(bufs[i].subarray(0, n));
    total += n;
    opts.onBytes?.(n);
    n = await next;
    i = 1 - i;
  }
  return { bytes: total, sha256: hash.digest("hex") };
}

/**
 * Writes a stream of chunks (e.g. one tar entry) to `dst` (created exclusively), hashing in the
 * same pass, coalescing small chunks into large writes, then fsyncs. Returns bytes and SHA-256.
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
    const buf = pending.length === 1 ? pending[0] : concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await writeAll(outF, buf);
  };
  for await (const chunk of chunks) {
    checkAbort(opts.signal);
    hash.update(chunk);
    total += chunk.length;
    // The producer may reuse its buffer: keep a copy only when coalescing.
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= limit) await flush();
  }
  await flush();
  await outF.syncData();
  return { bytes: total, sha256: hash.digest("hex") };
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** fsyncs a directory so that renames and new entries in it survive a crash. */
export async function fsyncDir(path: string): Promise<void> {
  using d = await Deno.open(path, { read: true });
  await d.sync();
}
