import { assert, assertEquals, assertMatch, assertThrows } from "../../test/support/assert.ts";
import { createContext } from "../context.ts";
import { ExitCode, InstallError } from "../errors.ts";
import { sha256Hex } from "../hash.ts";
import type { Bundle, BundleFile } from "./types.ts";
import { assertVerified, judgeFile, verifyBundle } from "./verify.ts";

const HA = sha256Hex("alpha");
const HB = sha256Hex("bravo");

function testCtx() {
  const out: string[] = [];
  const ctx = createContext({
    sink: { write: (t) => out.push(t), isTTY: false },
    interactive: false,
  });
  return { ctx, out };
}

/** A bundle dir with files written from `content`; `listed` gives each file's expected digest. */
async function makeBundle(
  content: Record<string, string>,
  listed: Record<string, { sha256: string; source: "pin" | "checksums" }>,
  extra: Partial<Bundle> = {},
): Promise<Bundle> {
  const dir = await Deno.makeTempDir({ prefix: "cit-verify-" });
  const files: BundleFile[] = [];
  for (const path of new Set([...Object.keys(content), ...Object.keys(listed)])) {
    const abs = `${dir}/${path}`;
    if (path in content) {
      await Deno.mkdir(abs.slice(0, abs.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(abs, content[path]);
    }
    files.push({
      path,
      abs,
      size: path in content ? content[path].length : undefined,
      kind: path.endsWith(".tar") ? "image" : "model",
      expected: listed[path],
    });
  }
  files.sort((a, b) => a.path.localeCompare(b.path));
  return {
    dir,
    format: "script",
    files,
    images: [],
    models: [],
    hasChecksums: true,
    unlisted: files.filter((f) => !f.expected).map((f) => f.path),
    missing: files.filter((f) => f.size === undefined).map((f) => f.path),
    warnings: [],
    ...extra,
  };
}

Deno.test("judgeFile() gives each case its verdict and message", async (t) => {
  const cases = [
    {
      name: "match",
      f: { path: "a.tar", size: 5, expected: { sha256: HA, source: "checksums" as const } },
      h: { sha256: HA, size: 5 },
      verdict: "ok",
      err: undefined,
    },
    {
      name: "mismatch names both digests and the fix",
      f: { path: "a.tar", size: 5, expected: { sha256: HA, source: "checksums" as const } },
      h: { sha256: HB, size: 5 },
      verdict: "mismatch",
      err: new RegExp(
        `^Cannot verify "a\\.tar": sha256 is ${HB.slice(0, 12)}…, checksums\\.sha256 lists ${
          HA.slice(0, 12)
        }…; re-copy the file from the transfer media$`,
      ),
    },
    {
      name: "a pin is named as the release pins",
      f: { path: "a.tar", size: 5, expected: { sha256: HA, source: "pin" as const } },
      h: { sha256: HB, size: 5 },
      verdict: "mismatch",
      err: /the release pins lists/,
    },
    {
      name: "missing",
      f: { path: "a.tar", size: undefined, expected: { sha256: HA, source: "checksums" as const } },
      h: undefined,
      verdict: "missing",
      err: /^Cannot verify "a\.tar": the file is missing/,
    },
    {
      name: "vanished while hashing",
      f: { path: "a.tar", size: 5, expected: { sha256: HA, source: "checksums" as const } },
      h: new Deno.errors.NotFound("gone"),
      verdict: "missing",
      err: /the file is missing/,
    },
    {
      name: "unlisted (the caller decides)",
      f: { path: "x.tar", size: 5 },
      h: undefined,
      verdict: "unlisted",
      err: undefined,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const r = judgeFile(c.f, c.h);
      assertEquals(r.entry.verdict, c.verdict);
      if (c.err) assertMatch(r.error ?? "", c.err);
      else assertEquals(r.error, undefined);
    });
  }
});

Deno.test("verifyBundle() hashes listed files and fails closed", async (t) => {
  const cases: {
    name: string;
    content: Record<string, string>;
    listed: Record<string, { sha256: string; source: "pin" | "checksums" }>;
    extra?: Partial<Bundle>;
    opts?: { allowUnlisted?: boolean; noVerify?: boolean; skipImages?: boolean };
    ok: boolean;
    verdicts: Record<string, string>;
    errorMatch?: RegExp;
    warnMatch?: RegExp;
  }[] = [
    {
      name: "all good",
      content: { "a.tar": "alpha", "m/b.bin": "bravo" },
      listed: {
        "a.tar": { sha256: HA, source: "checksums" },
        "m/b.bin": { sha256: HB, source: "pin" },
      },
      ok: true,
      verdicts: { "a.tar": "ok", "m/b.bin": "ok" },
    },
    {
      name: "one byte changed",
      content: { "a.tar": "alphA", "m/b.bin": "bravo" },
      listed: {
        "a.tar": { sha256: HA, source: "checksums" },
        "m/b.bin": { sha256: HB, source: "checksums" },
      },
      ok: false,
      verdicts: { "a.tar": "mismatch", "m/b.bin": "ok" },
      errorMatch: /"a\.tar": sha256 is .*re-copy the file/,
    },
    {
      name: "listed file missing",
      content: { "m/b.bin": "bravo" },
      listed: {
        "a.tar": { sha256: HA, source: "checksums" },
        "m/b.bin": { sha256: HB, source: "checksums" },
      },
      ok: false,
      verdicts: { "a.tar": "missing", "m/b.bin": "ok" },
      errorMatch: /"a\.tar": the file is missing/,
    },
    {
      name: "unlisted image tar is an error",
      content: { "a.tar": "alpha", "x.tar": "bravo" },
      listed: { "a.tar": { sha256: HA, source: "checksums" } },
      ok: false,
      verdicts: { "a.tar": "ok", "x.tar": "unlisted" },
      errorMatch: /"x\.tar": no checksum or pin covers it.*--allow-unlisted/,
    },
    {
      name: "--allow-unlisted makes it a warning",
      content: { "a.tar": "alpha", "x.tar": "bravo" },
      listed: { "a.tar": { sha256: HA, source: "checksums" } },
      opts: { allowUnlisted: true },
      ok: true,
      verdicts: { "a.tar": "ok", "x.tar": "unlisted" },
      warnMatch: /"x\.tar" is not listed/,
    },
    {
      name: "no checksums and no pins",
      content: { "a.tar": "alpha" },
      listed: {},
      extra: { hasChecksums: false },
      opts: { allowUnlisted: true },
      ok: false,
      verdicts: { "a.tar": "unlisted" },
      errorMatch: /has no checksums\.sha256 and the release manifest pins none/,
    },
    {
      name: "pins alone are enough",
      content: { "a.tar": "alpha" },
      listed: { "a.tar": { sha256: HA, source: "pin" } },
      extra: { hasChecksums: false },
      ok: true,
      verdicts: { "a.tar": "ok" },
    },
    {
      name: "--no-verify skips everything, loudly",
      content: { "a.tar": "alphA" },
      listed: { "a.tar": { sha256: HA, source: "checksums" } },
      opts: { noVerify: true },
      ok: true,
      verdicts: { "a.tar": "skipped" },
      warnMatch: /Integrity checks are OFF/,
    },
    {
      name: "skipImages leaves tars to load",
      content: { "a.tar": "alphA", "m/b.bin": "bravo" },
      listed: {
        "a.tar": { sha256: HA, source: "checksums" },
        "m/b.bin": { sha256: HB, source: "checksums" },
      },
      opts: { skipImages: true },
      ok: true,
      verdicts: { "m/b.bin": "ok" },
    },
    {
      name: "unlisted model file reported by the reader",
      content: { "a.tar": "alpha" },
      listed: { "a.tar": { sha256: HA, source: "checksums" } },
      extra: { unlisted: ["models/x/config.json"] },
      ok: false,
      verdicts: { "a.tar": "ok", "models/x/config.json": "unlisted" },
      errorMatch: /"models\/x\/config\.json": no checksum/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const b = await makeBundle(c.content, c.listed, c.extra);
      try {
        const { ctx, out } = testCtx();
        const r = await verifyBundle(ctx, b, c.opts);
        assertEquals(r.ok, c.ok, `ok (errors: ${r.errors.join(" | ")})`);
        assertEquals(Object.fromEntries(r.files.map((f) => [f.path, f.verdict])), c.verdicts);
        if (c.errorMatch) assert(r.errors.some((e) => c.errorMatch!.test(e)), r.errors.join("\n"));
        else assertEquals(r.errors, []);
        if (c.warnMatch) {
          assert(r.warnings.some((w) => c.warnMatch!.test(w)), r.warnings.join("\n"));
          assertMatch(out.join(""), /warning: /);
        }
        const ok = r.files.find((f) => f.verdict === "ok");
        if (ok) assertEquals(ok.actual, ok.expected);
      } finally {
        await Deno.remove(b.dir, { recursive: true });
      }
    });
  }
});

Deno.test("verifyBundle() reports hashing progress by bytes", async () => {
  const b = await makeBundle({ "a.tar": "alpha", "b.tar": "bravo" }, {
    "a.tar": { sha256: HA, source: "checksums" },
    "b.tar": { sha256: HB, source: "checksums" },
  });
  try {
    const { ctx } = testCtx();
    await verifyBundle(ctx, b);
    assertEquals([ctx.progress.total, ctx.progress.done], [10, 10]);
  } finally {
    await Deno.remove(b.dir, { recursive: true });
  }
});

Deno.test("assertVerified() throws an integrity error naming the files", async () => {
  const b = await makeBundle({ "a.tar": "alphA" }, {
    "a.tar": { sha256: HA, source: "checksums" },
    "gone.tar": { sha256: HB, source: "checksums" },
  });
  try {
    const { ctx } = testCtx();
    const r = await verifyBundle(ctx, b);
    const e = assertThrows(() => assertVerified(r), InstallError);
    assertEquals(e.exitCode, ExitCode.Integrity);
    assertMatch(
      e.message,
      /2 of 2 file\(s\) failed: "a\.tar" \(mismatch\), "gone\.tar" \(missing\)/,
    );
    assertMatch(e.hint ?? "", /Re-copy the file/);
    assertMatch(e.detail ?? "", /gone\.tar/);
    assertVerified({ ok: true, files: [], errors: [], warnings: [] });
  } finally {
    await Deno.remove(b.dir, { recursive: true });
  }
});
