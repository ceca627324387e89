/** verify on Cortex 0.2 bundles (synthesized tars, the real reader). */
import { assert, assertEquals, assertMatch, assertThrows } from "../../test/support/assert.ts";
import { corrupt02, DEFAULT_MODEL, fakeBundle02 } from "../../test/support/bundle02.ts";
import { corrupt } from "../../test/support/fixtures.ts";
import { createContext } from "../context.ts";
import { InstallError } from "../errors.ts";
import { readBundle } from "../bundle/read.ts";
import { loadReleasePolicies } from "../bundle/release.ts";
import { assertVerified, judgeFile, verifyBundle } from "./verify.ts";

const POLICIES = await loadReleasePolicies();
const quiet = () => createContext({ sink: { write: () => {}, isTTY: false }, interactive: false });

async function verify02(
  damage: (dir: string, modelFiles: string[]) => Promise<void> = async () => {},
  opts: { allowUnlisted?: boolean } = {},
) {
  const b = await fakeBundle02({
    variant: "admin-ui",
    models: [DEFAULT_MODEL],
    dbDump: "-- dump\n",
  });
  try {
    await damage(b.dir, b.modelFiles);
    const bundle = await readBundle(b.dir, POLICIES);
    return { report: await verifyBundle(quiet(), bundle, opts), built: b };
  } finally {
    await b.cleanup();
  }
}

Deno.test("verifyBundle(): a good 0.2 bundle passes and says what no checksum covers", async () => {
  const { report, built } = await verify02();
  assertEquals(report.errors, []);
  assertEquals(report.ok, true);
  assertEquals(
    report.files.map((f) => [f.path, f.verdict]),
    [
      ["db/cortex.sql", "ok"],
      ...built.images.map((i) => [i.file, "ok"]).sort(),
      ["images.json", "ok"],
      ...built.modelFiles.map((p) => [p, "ok"]),
    ].sort((a, b) => a[0] < b[0] ? -1 : 1),
  );
  assertEquals(report.uncovered, ["bundle.json", "models/tiny-chat/manifest.json"]);
});

Deno.test("verifyBundle(): a flipped byte in a model file fails (exit 4) naming it", async () => {
  const { report, built } = await verify02((dir) => corrupt02(dir, { flipModelByte: "tiny-chat" }));
  const bad = built.modelFiles[0];
  assertEquals(report.ok, false);
  assertEquals(report.files.filter((f) => f.verdict !== "ok").map((f) => [f.path, f.verdict]), [
    [bad, "mismatch"],
  ]);
  assertMatch(
    report.errors[0],
    new RegExp(`Cannot verify "${bad}": sha256 is [0-9a-f]{12}…, checksums\\.sha256 lists`),
  );
  const e = assertThrows(() => assertVerified(report), InstallError);
  assertEquals(e.exitCode, 4);
});

Deno.test("verifyBundle(): images.json problems fail with both files named", async (t) => {
  await t.step("images.json no longer matches its checksums line", async () => {
    const { report } = await verify02((dir) => corrupt02(dir, { imagesJson: "tampered" }));
    assertEquals(report.ok, false);
    assertEquals(report.files.find((f) => f.path === "images.json")?.verdict, "mismatch");
    assertEquals(report.errors.length, 1, report.errors.join(" | "));
    assertMatch(report.errors[0], /"images\.json": sha256 is .*checksums\.sha256 lists/);
  });
  await t.step("images.json and checksums.sha256 disagree on a tar", async () => {
    const { report, built } = await verify02((dir) => corrupt02(dir, { imagesJson: "disagree" }));
    const first = built.images[0].file; // the first images.json entry was changed
    assertEquals(report.files.find((f) => f.path === first)?.verdict, "conflict");
    assertMatch(
      report.errors.join("\n"),
      /images\.json lists sha256 000000000000…, checksums\.sha256 lists/,
    );
    const e = assertThrows(() => assertVerified(report), InstallError);
    assertMatch(e.message, new RegExp(`"${first.replace(".", "\\.")}" \\(conflict\\)`));
  });
});

Deno.test("verifyBundle(): a model file only its manifest lists is unlisted, still hashed", async (t) => {
  const strip = async (dir: string) => {
    const p = `${dir}/checksums.sha256`;
    const s = await Deno.readTextFile(p);
    await Deno.writeTextFile(p, s.split("\n").filter((l) => !l.includes("models/")).join("\n"));
  };
  await t.step("without --allow-unlisted: fails closed", async () => {
    const { report, built } = await verify02(strip);
    assertEquals(report.ok, false);
    for (const p of built.modelFiles) {
      assertEquals(report.files.find((f) => f.path === p)?.verdict, "unlisted");
    }
  });
  await t.step(
    "with --allow-unlisted, a damaged one still fails against its manifest",
    async () => {
      const { report, built } = await verify02(async (dir, files) => {
        await strip(dir);
        await corrupt(`${dir}/${files[1]}`, { appendGarbage: 3 });
      }, { allowUnlisted: true });
      assertEquals(report.ok, false);
      assertEquals(report.files.find((f) => f.path === built.modelFiles[1])?.verdict, "mismatch");
      assertEquals(report.files.find((f) => f.path === built.modelFiles[0])?.verdict, "unlisted");
    },
  );
});

Deno.test("verifyBundle(): a refused model (unsafe path) fails verify", async () => {
  const { report } = await verify02((dir) =>
    corrupt02(dir, { unsafeModelPath: "../../etc/cron.d/x" })
  );
  assertEquals(report.ok, false);
  assertEquals(
    report.files.find((f) => f.path === "models/tiny-chat/manifest.json")?.verdict,
    "unsafe",
  );
  assertMatch(
    report.errors.join("\n"),
    /Cannot seed model "tiny-chat": manifest\.json lists an unsafe path/,
  );
});

Deno.test("judgeFile(): images.json as the lister is named in the message", () => {
  const r = judgeFile(
    { path: "images/x.tar", size: 3, expected: { sha256: "a".repeat(64), source: "images.json" } },
    { sha256: "b".repeat(64), size: 3 },
  );
  assertEquals(r.entry.verdict, "mismatch");
  assertMatch(r.error!, /images\.json lists aaaaaaaaaaaa…/);
  assert(!r.error!.includes("checksums"));
});
