import { assert, assertEquals, assertRejects } from "../test/support/assert.ts";
import { createHash } from "node:crypto";
import { InterruptedError } from "./errors.ts";
import { copyHashed, writeStreamHashed } from "./copy.ts";
import { hashFile } from "./hash.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

Deno.test("copyHashed() copies byte for byte and hashes in the same pass", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [label, size, chunk] of [["empty", 0, 1024], ["odd size", 100_003, 4096], [
        "multi chunk",
        3 * 1024 * 1024 + 7,
        1024 * 1024,
      ]] as const
    ) {
      await t.step(label, async () => {
        const data = randomBytes(size);
        const src = `${dir}/${size}.src`;
        const dst = `${dir}/${size}.dst`;
        await Deno.writeFile(src, data);
        let seen = 0;
        const r = await copyHashed(src, dst, { chunkSize: chunk, onBytes: (n) => (seen += n) });
        assertEquals(r.size, size);
        assertEquals(r.sha256, sha(data));
        assertEquals(seen, size);
        assertEquals(sha(await Deno.readFile(dst)), sha(data));
        assertEquals((await hashFile(src, undefined, undefined, chunk)).sha256, sha(data));
      });
    }
    await t.step("never overwrites an existing file", async () => {
      await Deno.writeTextFile(`${dir}/a`, "new");
      await Deno.writeTextFile(`${dir}/b`, "old");
      await assertRejects(() => copyHashed(`${dir}/a`, `${dir}/b`), Deno.errors.AlreadyExists);
      assertEquals(await Deno.readTextFile(`${dir}/b`), "old");
    });
    await t.step("an aborted signal stops the copy", async () => {
      await Deno.writeFile(`${dir}/big`, randomBytes(4 * 1024 * 1024));
      const ac = new AbortController();
      let calls = 0;
      await assertRejects(
        () =>
          copyHashed(`${dir}/big`, `${dir}/big.dst`, {
            chunkSize: 1024 * 1024,
            signal: ac.signal,
            onBytes: () => {
              calls++;
              ac.abort();
            },
          }),
        InterruptedError,
      );
      assertEquals(calls, 1);
      assert((await Deno.stat(`${dir}/big.dst`)).size < 4 * 1024 * 1024);
    });
    await t.step("writeStreamHashed() coalesces chunks", async () => {
      const parts = [randomBytes(10), randomBytes(2 * 1024 * 1024), randomBytes(5)];
      async function* gen() {
        for (const p of parts) yield p;
      }
      const r = await writeStreamHashed(gen(), `${dir}/stream`);
      const all = new Uint8Array([...parts[0], ...parts[1], ...parts[2]]);
      assertEquals(r.size, all.length);
      assertEquals(r.sha256, sha(all));
      assertEquals(sha(await Deno.readFile(`${dir}/stream`)), sha(all));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
