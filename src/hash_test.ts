import { assert, assertEquals, assertRejects } from "../test/support/assert.ts";
import { hashFile, hashFiles, readChunks, sha256Hex, shortDigest } from "./hash.ts";
import { InterruptedError } from "./errors.ts";

const ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async function tmpFile(content: Uint8Array | string): Promise<string> {
  const p = await Deno.makeTempFile({ prefix: "cit-hash-" });
  if (typeof content === "string") await Deno.writeTextFile(p, content);
  else await Deno.writeFile(p, content);
  return p;
}

Deno.test("hashFile() gives the SHA-256 and size of a file", async (t) => {
  const big = new Uint8Array(1_000_003);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  const cases: { name: string; content: Uint8Array | string; chunk?: number; sha: string }[] = [
    { name: "abc", content: "abc", sha: ABC },
    { name: "empty file", content: "", sha: EMPTY },
    { name: "many chunks, last one short", content: big, chunk: 4096, sha: sha256Hex(big) },
    {
      name: "exact chunk multiple",
      content: big.subarray(0, 8192),
      chunk: 4096,
      sha: sha256Hex(big.subarray(0, 8192)),
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const p = await tmpFile(c.content);
      try {
        let reported = 0;
        const r = await hashFile(p, (n) => reported += n, undefined, c.chunk);
        const size = typeof c.content === "string" ? c.content.length : c.content.length;
        assertEquals(r, { sha256: c.sha, size });
        assertEquals(reported, size);
      } finally {
        await Deno.remove(p);
      }
    });
  }
});

Deno.test("readChunks() fills whole chunks except the last", async () => {
  const p = await tmpFile(new Uint8Array(10_000));
  try {
    const sizes: number[] = [];
    const total = await readChunks(
      p,
      (c) => {
        sizes.push(c.length);
      },
      undefined,
      4096,
    );
    assertEquals(sizes, [4096, 4096, 1808]);
    assertEquals(total, 10_000);
  } finally {
    await Deno.remove(p);
  }
});

Deno.test("hashFile() stops with InterruptedError when aborted", async () => {
  const p = await tmpFile(new Uint8Array(100_000));
  const ac = new AbortController();
  ac.abort();
  try {
    await assertRejects(() => hashFile(p, undefined, ac.signal, 4096), InterruptedError);
  } finally {
    await Deno.remove(p);
  }
});

Deno.test("hashFiles() keeps input order and reports unreadable files as errors", async () => {
  const a = await tmpFile("abc");
  const b = await tmpFile("");
  const missing = `${a}.missing`;
  try {
    let bytes = 0;
    const done: string[] = [];
    const r = await hashFiles([b, missing, a], {
      concurrency: 2,
      onBytes: (n) => bytes += n,
      onDone: (p) => done.push(p),
    });
    assertEquals([...r.keys()], [b, missing, a]);
    assertEquals(r.get(a), { sha256: ABC, size: 3 });
    assertEquals(r.get(b), { sha256: EMPTY, size: 0 });
    assert(r.get(missing) instanceof Deno.errors.NotFound, "missing file -> NotFound");
    assertEquals(bytes, 3);
    assertEquals(done.sort(), [a, b, missing].sort());
  } finally {
    await Deno.remove(a);
    await Deno.remove(b);
  }
});

Deno.test("shortDigest() shortens digests for messages", () => {
  assertEquals(shortDigest(ABC), "ba7816bf8f01…");
  assertEquals(shortDigest(undefined), "(none)");
  assertEquals(shortDigest("abc"), "abc");
});
