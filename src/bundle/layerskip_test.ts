import { assertEquals, assertMatch } from "../../test/support/assert.ts";
import {
  chainIds,
  layersToBlank,
  presentChains,
  skipLayersTransform,
  type SkipStats,
} from "./layerskip.ts";
import { parseNumericField } from "./tarindex.ts";

const enc = new TextEncoder();

// ---- a tiny tar writer for the tests (independent of the code under test) ----

function field(h: Uint8Array, off: number, s: string) {
  h.set(enc.encode(s), off);
}

function header(
  name: string,
  size: number,
  type = "0",
  o: { prefix?: string; base256?: boolean; gnu?: boolean } = {},
): Uint8Array {
  const h = new Uint8Array(512);
  field(h, 0, name);
  field(h, 100, "0000644\0");
  field(h, 108, "0000000\0");
  field(h, 116, "0000000\0");
  if (o.base256) {
    h[124] = 0x80;
    let v = size;
    for (let i = 135; i > 124; i--) {
      h[i] = v % 256;
      v = Math.floor(v / 256);
    }
  } else {
    field(h, 124, size.toString(8).padStart(11, "0") + "\0");
  }
  field(h, 136, "14000000000\0");
  h[156] = type.charCodeAt(0);
  if (o.gnu) field(h, 257, "ustar  \0");
  else field(h, 257, "ustar\x0000");
  if (o.prefix) field(h, 345, o.prefix);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  field(h, 148, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

function padded(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.length / 512) * 512);
  out.set(data);
  return out;
}

function paxData(records: Record<string, string>): Uint8Array {
  let s = "";
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len++;
    s += len + body;
  }
  return enc.encode(s);
}

interface Entry {
  name: string;
  data?: Uint8Array;
  type?: string;
  pax?: Record<string, string>;
  gnuLong?: boolean;
  prefix?: string;
  base256?: boolean;
  /** Size in the ustar header when a PAX size record carries the real one. */
  headerSize?: number;
}

/** Writes a tar; entries in `blank` are written the way the transform must send them. */
function tar(entries: Entry[], blank = new Set<string>()): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const isBlank = blank.has(e.name);
    const data = isBlank ? new Uint8Array(0) : e.data ?? new Uint8Array(0);
    let pax = e.pax;
    if (pax && isBlank) pax = Object.fromEntries(Object.entries(pax).filter(([k]) => k !== "size"));
    if (pax) {
      const d = paxData(pax);
      parts.push(header("PaxHeaders/x", d.length, "x"), padded(d));
    }
    let name = e.name;
    if (e.gnuLong) {
      const d = enc.encode(e.name + "\0");
      parts.push(header("././@LongLink", d.length, "L", { gnu: true }), padded(d));
      name = e.name.slice(0, 99);
    } else if (e.pax?.path) {
      name = "short";
    } else if (e.prefix) {
      name = e.name.slice(e.prefix.length + 1);
    }
    const size = isBlank ? 0 : e.headerSize ?? data.length;
    parts.push(
      header(name, size, e.type ?? "0", {
        prefix: e.prefix,
        base256: e.base256 && !isBlank, // a blanked size is written in octal
        gnu: e.gnuLong,
      }),
    );
    parts.push(padded(data));
  }
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

async function run(
  input: Uint8Array,
  blank: Set<string>,
  chunk: number,
): Promise<{ out: Uint8Array; stats: SkipStats }> {
  const stats: SkipStats = { blanked: [], skippedBytes: 0, gaveUp: false };
  const src = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < input.length; i += chunk) c.enqueue(input.slice(i, i + chunk));
      c.close();
    },
  });
  const buf = await new Response(src.pipeThrough(skipLayersTransform(blank, stats))).arrayBuffer();
  return { out: new Uint8Array(buf), stats };
}

const CHUNKS = [1, 511, 512, 513, 65536, 1 << 30];

// The layout of a legacy `docker save`, plus the header kinds a tar may use.
const ENTRIES: Entry[] = [
  { name: "aaa", type: "5" },
  { name: "aaa/VERSION", data: enc.encode("1.0") },
  { name: "aaa/layer.tar", data: bytes(5000, 1) },
  { name: "bbb/layer.tar", data: bytes(1024, 2) },
  { name: "ccc/layer.tar", type: "2" },
  { name: "p".repeat(120) + "/layer.tar", data: bytes(700, 3), gnuLong: true },
  {
    name: "q".repeat(130) + "/layer.tar",
    data: bytes(900, 4),
    pax: { path: "q".repeat(130) + "/layer.tar", size: "900" },
    headerSize: 0,
  },
  { name: "pre/fixed/layer.tar", data: bytes(513, 5), prefix: "pre/fixed" },
  { name: "b256/layer.tar", data: bytes(1500, 6), base256: true },
  { name: "manifest.json", data: enc.encode('[{"Config":"x.json"}]') },
];

Deno.test("skipLayersTransform() blanks the named entries at any chunk size", async (t) => {
  const input = tar(ENTRIES);
  const sets: [string, string[]][] = [
    ["nothing", []],
    ["a plain layer", ["aaa/layer.tar"]],
    ["./-prefixed name", ["./bbb/layer.tar"]],
    ["GNU long name", ["p".repeat(120) + "/layer.tar"]],
    ["PAX path and size", ["q".repeat(130) + "/layer.tar"]],
    ["ustar prefix", ["pre/fixed/layer.tar"]],
    ["base-256 size", ["b256/layer.tar"]],
    ["all layers", [
      "aaa/layer.tar",
      "bbb/layer.tar",
      "p".repeat(120) + "/layer.tar",
      "q".repeat(130) + "/layer.tar",
      "pre/fixed/layer.tar",
      "b256/layer.tar",
    ]],
  ];
  for (const [label, names] of sets) {
    const blank = new Set(names);
    const expected = tar(ENTRIES, new Set(names.map((n) => n.replace(/^\.\//, ""))));
    for (const chunk of CHUNKS) {
      await t.step(`${label}, chunks of ${chunk}`, async () => {
        const { out, stats } = await run(input, blank, chunk);
        assertEquals(out.length, expected.length);
        assertEquals(out, expected);
        assertEquals(stats.blanked.length, names.length);
        assertEquals(stats.gaveUp, false);
        const skipped = ENTRIES.filter((e) => blank.has(e.name) || blank.has(`./${e.name}`))
          .reduce((n, e) => n + padded(e.data!).length, 0);
        assertEquals(stats.skippedBytes, skipped);
      });
    }
  }
  await t.step(
    "a symlink, a directory or a small file named in the set is left alone",
    async () => {
      const { out, stats } = await run(input, new Set(["ccc/layer.tar", "aaa"]), 4096);
      assertEquals(out, input);
      assertEquals(stats.blanked, []);
    },
  );
});

Deno.test("skipLayersTransform() output is read by GNU tar with blanked entries empty", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-state-layerskip-" });
  try {
    await Deno.mkdir(`${dir}/src/${"d".repeat(110)}`, { recursive: true });
    const long = `${"d".repeat(110)}/layer.tar`;
    await Deno.writeFile(`${dir}/src/${long}`, bytes(3000, 7));
    await Deno.writeFile(`${dir}/src/keep.tar`, bytes(2000, 8));
    for (const format of ["gnu", "posix", "ustar"]) {
      if (format === "ustar") continue; // ustar cannot hold the 121-byte name
      const made = await new Deno.Command("tar", {
        args: [`--format=${format}`, "-C", `${dir}/src`, "-cf", `${dir}/in.tar`, long, "keep.tar"],
      }).output();
      assertEquals(made.code, 0, new TextDecoder().decode(made.stderr));
      const input = await Deno.readFile(`${dir}/in.tar`);
      const { out, stats } = await run(input, new Set([long]), 513);
      assertEquals(stats.blanked, [long]);
      await Deno.writeFile(`${dir}/out.tar`, out);
      const list = await new Deno.Command("tar", { args: ["-tvf", `${dir}/out.tar`] }).output();
      assertEquals(list.code, 0, new TextDecoder().decode(list.stderr));
      const lines = new TextDecoder().decode(list.stdout).trim().split("\n");
      assertEquals(lines.length, 2);
      assertMatch(lines[0], new RegExp(` 0 .*${long}$`));
      assertMatch(lines[1], / 2000 .*keep\.tar$/);
      const x = await new Deno.Command("tar", {
        args: ["-xOf", `${dir}/out.tar`, "keep.tar"],
        stdout: "piped",
      }).output();
      assertEquals(x.stdout, bytes(2000, 8));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("skipLayersTransform() passes a non-tar on unchanged", async (t) => {
  for (const chunk of [1, 512, 65536]) {
    await t.step(`chunks of ${chunk}`, async () => {
      const junk = bytes(3000, 9);
      const { out, stats } = await run(junk, new Set(["x"]), chunk);
      assertEquals(out, junk);
      assertEquals(stats.gaveUp, true);
    });
  }
  await t.step("a truncated tar comes out as it went in", async () => {
    const input = tar(ENTRIES).subarray(0, 700);
    const { out } = await run(input, new Set(["bbb/layer.tar"]), 100);
    assertEquals(out, input);
  });
});

Deno.test(
  "skipLayersTransform() copies what it passes on: the writer reuses one buffer for every chunk",
  async (t) => {
    // The loader reads each chunk into one of three buffers and reads into it again once the
    // chunk's write has settled, while the output may still wait in the readable's queue.
    const collect = async (input: Uint8Array, blank: Set<string>, chunk: number) => {
      const tr = skipLayersTransform(blank);
      const reading = new Response(tr.readable).arrayBuffer();
      const w = tr.writable.getWriter();
      const buf = new Uint8Array(chunk);
      for (let i = 0; i < input.length; i += chunk) {
        const n = Math.min(chunk, input.length - i);
        buf.set(input.subarray(i, i + n));
        await w.write(buf.subarray(0, n));
        buf.fill(0xee); // the next read overwrites it
      }
      await w.close();
      return new Uint8Array(await reading);
    };
    const input = tar(ENTRIES);
    for (const chunk of [512, 700, 65536]) {
      await t.step(`a layer blanked, chunks of ${chunk}`, async () => {
        const names = ["aaa/layer.tar"];
        assertEquals(await collect(input, new Set(names), chunk), tar(ENTRIES, new Set(names)));
      });
      await t.step(`not a tar (passed raw), chunks of ${chunk}`, async () => {
        const junk = bytes(3000, 9);
        assertEquals(await collect(junk, new Set(["x"]), chunk), junk);
      });
    }
  },
);

async function sha256Hex(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", enc.encode(s));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("chainIds() follows the image spec", async () => {
  const d = ["sha256:" + "a".repeat(64), "sha256:" + "b".repeat(64), "sha256:" + "c".repeat(64)];
  const c1 = "sha256:" + await sha256Hex(`${d[0]} ${d[1]}`);
  const c2 = "sha256:" + await sha256Hex(`${c1} ${d[2]}`);
  assertEquals(chainIds(d), [d[0], c1, c2]);
  assertEquals(chainIds([]), []);
});

Deno.test("layersToBlank() blanks only layers whose whole chain is present", async (t) => {
  const [a, b, c, x] = ["a", "b", "c", "x"].map((l) => "sha256:" + l.repeat(64));
  const img = { diffIds: [a, b, c], layerPaths: ["la/layer.tar", "lb/layer.tar", "lc/layer.tar"] };
  const cases: [string, string[][], string[]][] = [
    ["nothing present", [], []],
    ["base present", [[a]], ["la/layer.tar"]],
    ["two of three", [[a, b, x]], ["la/layer.tar", "lb/layer.tar"]],
    ["all present", [[a, b, c]], ["la/layer.tar", "lb/layer.tar", "lc/layer.tar"]],
    ["same diff IDs, other base: no chain", [[x, b, c]], []],
    ["a diff ID present only higher up does not count", [[x, a]], []],
  ];
  for (const [name, engine, want] of cases) {
    await t.step(name, () => {
      assertEquals([...layersToBlank(img, presentChains(engine))].sort(), want);
    });
  }
  await t.step("a function is asked with chain IDs", () => {
    const asked: string[] = [];
    const got = layersToBlank(img, (cid, i) => (asked.push(cid), i < 1));
    assertEquals([...got], ["la/layer.tar"]);
    // It stops asking once a chain is missing: nothing above it can be blanked.
    assertEquals(asked, chainIds([a, b, c]).slice(0, 2));
  });
  await t.step("a diff ID used twice is blanked only when both uses are present", () => {
    const dup = {
      diffIds: [a, b, a],
      layerPaths: ["l1/layer.tar", "l2/layer.tar", "l3/layer.tar"],
    };
    assertEquals([...layersToBlank(dup, presentChains([[a, b]]))], ["l2/layer.tar"]);
    assertEquals(
      [...layersToBlank(dup, presentChains([[a, b, a]]))].sort(),
      ["l1/layer.tar", "l2/layer.tar", "l3/layer.tar"],
    );
  });
  await t.step("several images in one tar", () => {
    const other = { diffIds: [x, a], layerPaths: ["lx/layer.tar", "la/layer.tar"] };
    assertEquals([...layersToBlank([img, other], presentChains([[a]]))], []);
  });
});

Deno.test("parseNumericField() reads the octal and base-256 sizes of this writer's headers", async (t) => {
  const cases: [string, Uint8Array, number][] = [
    ["octal", header("a", 0o1234).subarray(124, 136), 0o1234],
    [
      "base-256 over 8 GiB",
      header("a", 20 * 2 ** 30, "0", { base256: true }).subarray(124, 136),
      20 * 2 ** 30,
    ],
    ["empty", new Uint8Array(12), 0],
  ];
  for (const [name, b, want] of cases) {
    await t.step(name, () => assertEquals(parseNumericField(b, 0, 12), want));
  }
});
