import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { InstallError } from "../errors.ts";
import {
  beginRun,
  currentRelease,
  emptyJournal,
  finishRun,
  isStepDone,
  isVerified,
  type Journal,
  journalPath,
  markRolledBack,
  markVerified,
  previousRelease,
  readJournal,
  recordLoaded,
  recordModel,
  recordRelease,
  recordStep,
  type Release,
  type StatLike,
  verifiedSha256,
  writeJournal,
} from "./journal.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

async function tmpDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "cit-state-journal-" });
}

function release(version: string, outcome: Release["outcome"]): Release {
  return {
    release: version,
    bundleDigest: `sha256:${version.replace(/\D/g, "").padEnd(64, "0")}`,
    bundleDir: `/media/bundle-${version}`,
    installedAt: "2026-01-18T12:00:00.000Z",
    engineRefs: { vllm: "vllm/vllm-openai:v0.6.3" },
    images: { "postgres:16": `sha256:${SHA_A}` },
    envFiles: { "/opt/Cortex/backend/.env": { sha256: SHA_B, backup: "/opt/x.bak" } },
    override: "/opt/Cortex/docker.compose.cortex-install.yaml",
    outcome,
  };
}

async function expectStateError(dir: string, pattern: RegExp) {
  const err = await readJournal(dir).then(() => undefined, (e) => e);
  assert(err instanceof InstallError, `expected an InstallError, got ${err}`);
  assertEquals(err.step, "state");
  assertEquals(err.exitCode, 3);
  assert(err.message.includes(journalPath(dir)), err.message);
  assertMatch(err.message, pattern);
  assert(err.hint && err.hint.length > 10);
}

Deno.test("readJournal() and writeJournal()", async (t) => {
  const dir = await tmpDir();
  try {
    await t.step("a missing journal reads as empty", async () => {
      assertEquals(await readJournal(`${dir}/nope`), emptyJournal());
    });
    await t.step("what is written is read back, mode 0600", async () => {
      const j = emptyJournal();
      recordRelease(j, release("0.1.0", "installed"));
      recordLoaded(j, "postgres:16", `sha256:${SHA_A}`);
      recordModel(j, "/var/cortex/models/qwen", { files: 3, bytes: 42, sha256Tree: SHA_B });
      markVerified(j, "/b/x.tar", statOf(10, 1000, 7), SHA_A, new Date(5000));
      beginRun(j, "sha256:d", 42, new Date(0));
      recordStep(j, "verify", "done");
      await writeJournal(`${dir}/s`, j);
      assertEquals(await readJournal(`${dir}/s`), j);
      assertEquals((await Deno.stat(journalPath(`${dir}/s`))).mode! & 0o777, 0o600);
      assertEquals((await Deno.stat(`${dir}/s`)).mode! & 0o777, 0o700);
    });
    const cases: [string, string, RegExp][] = [
      ["not JSON", '{"version": 1, "rel', /not valid JSON/],
      ["empty file", "", /not valid JSON/],
      [
        "wrong shape",
        '{"version":1,"releases":"x","artifacts":{},"loaded":{},"models":{}}',
        /releases/,
      ],
      ["newer version", '{"version":2}', /version 2/],
      ["null", "null", /Cannot read the state journal/],
    ];
    for (const [name, text, pattern] of cases) {
      await t.step(`a corrupt journal (${name}) is a clear preflight error`, async () => {
        await Deno.mkdir(`${dir}/c`, { recursive: true });
        await Deno.writeTextFile(journalPath(`${dir}/c`), text);
        await expectStateError(`${dir}/c`, pattern);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeJournal() leaves the old journal until the rename", async (t) => {
  const dir = await tmpDir();
  try {
    const old = emptyJournal();
    recordLoaded(old, "redis:7", `sha256:${SHA_A}`);
    await writeJournal(dir, old);
    const next = structuredClone(old);
    recordLoaded(next, "postgres:16", `sha256:${SHA_B}`);

    await t.step("a crash before the rename keeps the old journal", async () => {
      const crash = writeJournal(dir, next, {
        beforeRename: () => {
          throw new Error("simulated crash");
        },
      });
      await assertRejects(() => crash, Error, /simulated crash/);
      assertEquals(await readJournal(dir), old);
      // The complete new content was in the temp file, which nobody reads.
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assertEquals(names, [".journal.json.tmp", "journal.json"]);
    });
    await t.step("the next write replaces it and the leftover temp file", async () => {
      await writeJournal(dir, next);
      assertEquals(await readJournal(dir), next);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["journal.json"]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a process killed while writing the journal leaves it readable", async () => {
  const dir = await tmpDir();
  const mod = new URL("./journal.ts", import.meta.url).href;
  const code = `
    import { emptyJournal, recordLoaded, writeJournal } from "${mod}";
    const j = emptyJournal();
    for (let i = 0; ; i++) {
      recordLoaded(j, "img-" + i + "-" + "x".repeat(200), "sha256:" + i);
      await writeJournal(Deno.args[0], j);
      if (i === 5) console.log("writing");
    }`;
  try {
    for (let round = 0; round < 4; round++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", code, dir],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.getReader();
      await reader.read(); // it has written a few times
      await new Promise((r) => setTimeout(r, 20 + round * 37));
      child.kill("SIGKILL");
      reader.releaseLock();
      await child.stdout.cancel();
      await child.status;
      const j = await readJournal(dir);
      assert(Object.keys(j.loaded).length >= 6, `round ${round}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function statOf(size: number, mtimeMs: number, ino: number | null, ctimeMs?: number): StatLike {
  return {
    size,
    mtime: new Date(mtimeMs),
    ino,
    dev: 2049,
    ctime: ctimeMs === undefined ? null : new Date(ctimeMs),
  };
}

Deno.test("isVerified() trusts an unchanged file only", async (t) => {
  const base = statOf(100, 1_000_123, 55, 1_000_500);
  const j = markVerified(
    emptyJournal(),
    "/b/x.tar",
    base,
    SHA_A.toUpperCase(),
    new Date(2_000_000),
  );
  const cases: [string, string, StatLike, string | undefined, boolean][] = [
    ["unchanged", "/b/x.tar", base, undefined, true],
    ["unchanged, expected digest", "/b/x.tar", base, SHA_A, true],
    ["unchanged, other digest expected", "/b/x.tar", base, SHA_B, false],
    ["another path", "/b/y.tar", base, undefined, false],
    ["size changed", "/b/x.tar", { ...base, size: 101 }, undefined, false],
    ["mtime changed", "/b/x.tar", { ...base, mtime: new Date(1_000_124) }, undefined, false],
    ["inode changed (file replaced)", "/b/x.tar", { ...base, ino: 56 }, undefined, false],
    ["device changed", "/b/x.tar", { ...base, dev: 1 }, undefined, false],
    [
      "ctime changed (mtime reset)",
      "/b/x.tar",
      { ...base, ctime: new Date(1_999_000) },
      undefined,
      false,
    ],
    ["no inode", "/b/x.tar", { ...base, ino: null }, undefined, false],
    ["no mtime", "/b/x.tar", { ...base, mtime: null }, undefined, false],
  ];
  for (const [name, path, stat, expected, want] of cases) {
    await t.step(name, () => assertEquals(isVerified(j, path, stat, expected), want));
  }
  await t.step("the recorded digest is returned", () => {
    assertEquals(verifiedSha256(j, "/b/x.tar", base), SHA_A);
  });
  const racy: [string, number, number, boolean][] = [
    ["modified after hashing began", 5_000_500, 5_000_400, false],
    ["modified in the same millisecond", 5_000_400, 5_000_400, false],
    ["fine clock, just before", 5_000_399, 5_000_400, true],
    ["coarse clock, within 2 s", 5_000_000, 5_001_500, false],
    ["coarse clock, 2 s before", 5_000_000, 5_002_000, true],
  ];
  for (const [name, mtime, started, want] of racy) {
    await t.step(`racy: ${name}`, () => {
      const s = statOf(1, mtime, 9);
      const k = markVerified(emptyJournal(), "/f", s, SHA_A, new Date(started));
      assertEquals(isVerified(k, "/f", s), want);
    });
  }
});

Deno.test("isVerified() on real files notices a rewrite", async () => {
  const dir = await tmpDir();
  try {
    const f = `${dir}/a.tar`;
    await Deno.writeTextFile(f, "hello");
    await Deno.utime(f, 1_700_000_000.25, 1_700_000_000.25);
    // Changed in the second hashing began (ctime has whole seconds): not trusted later.
    const fresh = markVerified(emptyJournal(), f, await Deno.stat(f), SHA_A);
    assertEquals(isVerified(fresh, f, await Deno.stat(f)), false);
    await new Promise((r) => setTimeout(r, 1100));
    const before = await Deno.stat(f);
    const j = markVerified(emptyJournal(), f, before, SHA_A);
    assertEquals(isVerified(j, f, await Deno.stat(f)), true);
    // Deno may report ctime at whole seconds: let the clock move on before the rewrite.
    await new Promise((r) => setTimeout(r, 1100));
    await Deno.writeTextFile(f, "jello"); // same size
    await Deno.utime(f, 1_700_000_000.25, 1_700_000_000.25); // mtime put back
    const after = await Deno.stat(f);
    assertEquals(after.size, before.size);
    assertEquals(after.mtime!.getTime(), before.mtime!.getTime());
    assertEquals(after.ino, before.ino);
    assertEquals(isVerified(j, f, after), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runs, steps and releases", async (t) => {
  await t.step("a resume of the same bundle keeps its done steps", () => {
    const j: Journal = emptyJournal();
    assertEquals(beginRun(j, "sha256:one", 10), []);
    recordStep(j, "verify", "done");
    recordStep(j, "load", "running");
    // Crash; the next run of the same bundle:
    assertEquals(beginRun(j, "sha256:one", 11), ["verify"]);
    assertEquals(isStepDone(j, "sha256:one", "verify"), true);
    assertEquals(isStepDone(j, "sha256:one", "load"), false);
    assertEquals(j.inProgress?.pid, 11);
    // Another bundle starts over.
    assertEquals(beginRun(j, "sha256:two", 12), []);
    assertEquals(isStepDone(j, "sha256:one", "verify"), false);
    finishRun(j, {
      command: "cortex-install install",
      startedAt: "2026-01-01T00:00:00.000Z",
      finishedAt: "2026-01-01T00:01:00.000Z",
      outcome: "ok",
      exitCode: 0,
    });
    assertEquals(j.inProgress, undefined);
    assertEquals(j.lastRun?.outcome, "ok");
  });
  await t.step("previousRelease() is the newest installed one before the current", () => {
    const j = emptyJournal();
    assertEquals(previousRelease(j), undefined);
    assertEquals(recordRelease(j, release("0.1.0", "installed")), 0);
    assertEquals(previousRelease(j), undefined); // the only release is the current one
    recordRelease(j, release("0.1.1-a", "failed"));
    assertEquals(j.current, 0);
    recordRelease(j, release("0.1.1", "installed"));
    assertEquals(j.current, 2);
    assertEquals(currentRelease(j)?.release, "0.1.1");
    assertEquals(previousRelease(j), { index: 0, release: j.releases[0] });
    markRolledBack(j, 2, 0);
    assertEquals(j.releases[2].outcome, "rolled-back");
    assertEquals(currentRelease(j)?.release, "0.1.0");
    assertEquals(previousRelease(j), undefined);
  });
});

Deno.test("issue 10: a journal whose current is out of range is a validation error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-journal-current-" });
  try {
    const j = { version: 1, releases: [], artifacts: {}, loaded: {}, models: {}, current: 99 };
    await Deno.writeTextFile(`${dir}/journal.json`, JSON.stringify(j));
    const e = await assertRejects(() => readJournal(dir), InstallError);
    assertMatch(e.message, /current/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
