/** Issue 10 items 3 and 8: bundle names from the disk are data, never code or terminal control. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { InstallError, printable } from "../errors.ts";
import { readBundle } from "./read.ts";
import { judgeFile } from "./verify.ts";
import { parseReleaseManifest, pinOf } from "./release.ts";
import { dockerSaveTar, sha256 } from "../../test/support/tarbuild.ts";

const RELEASE = parseReleaseManifest(
  JSON.stringify({
    schema: 1,
    release: "0.1.1",
    images: [{ role: "postgres", repository: "postgres", critical: true }],
    env: { offline: {}, online: {}, paths: {} },
    readiness: [],
    pins: {},
  }),
  "test release",
);

async function scriptBundle(extra: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "cit-names-" });
  const tar = dockerSaveTar([{ repoTags: ["postgres:16"], layers: ["l"] }], "legacy").tar;
  await Deno.mkdir(join(dir, "images"));
  await Deno.writeFile(join(dir, "images/postgres.tar"), tar);
  await Deno.writeTextFile(
    join(dir, "manifest.json"),
    JSON.stringify({
      infra: [{ name: "postgres", image: "postgres:16", file: "images/postgres.tar" }],
    }),
  );
  let sums = `${sha256(tar)}  images/postgres.tar\n`;
  for (const [p, data] of Object.entries(extra)) {
    await Deno.writeTextFile(join(dir, p), data);
    sums += `${sha256(data)}  ${p}\n`;
  }
  await Deno.writeTextFile(join(dir, "checksums.sha256"), sums);
  return dir;
}

Deno.test("issue 10: a bundle file named like an Object.prototype key has no pin", async () => {
  assert.equal(pinOf(RELEASE.pins, "constructor"), undefined);
  assert.equal(pinOf(RELEASE.pins, "__proto__"), undefined);
  const dir = await scriptBundle({ constructor: "x", toString: "y" });
  try {
    const b = await readBundle(dir, RELEASE);
    for (const name of ["constructor", "toString"]) {
      const f = b.files.find((x) => x.path === name);
      if (f) assert.equal(f.expected?.source, "checksums", name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issue 10: a checksums.sha256 that is a directory is an error, not 'no checksums'", async () => {
  const dir = await scriptBundle({});
  try {
    await Deno.remove(join(dir, "checksums.sha256"));
    await Deno.mkdir(join(dir, "checksums.sha256"));
    await assert.rejects(
      readBundle(dir, RELEASE),
      (e) => e instanceof InstallError && /checksums\.sha256.*a directory/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issue 10: an unreadable file is reported 'unreadable', not 'missing'", () => {
  const r = judgeFile(
    { path: "images/x.tar", size: 10, expected: { sha256: "a".repeat(64), source: "checksums" } },
    new Deno.errors.PermissionDenied("Permission denied (os error 13)"),
  );
  assert.equal(r.entry.verdict, "unreadable");
  assert.match(r.error!, /unreadable/);
  assert.doesNotMatch(r.error!, /missing/);
});

Deno.test("issue 10: names with newlines and escapes are printed escaped", () => {
  const r = judgeFile(
    { path: "evil\nerror: all good\x1b[2K", size: undefined, expected: undefined },
    undefined,
  );
  assert.ok(!r.error!.includes("\n"), r.error!);
  assert.ok(!r.error!.includes("\x1b"), r.error!);
  assert.match(r.error!, /evil\\nerror: all good\\u\{1b\}\[2K/);
  assert.equal(printable("a\u2028b\u202ec\\"), "a\\u{2028}b\\u{202e}c\\\\");
  assert.equal(printable("line1\nline2\r", { keepNewlines: true }), "line1\nline2\\r");
});
