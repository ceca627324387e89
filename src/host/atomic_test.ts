import assert from "node:assert/strict";
import { backupStamp, writeFileAtomic } from "./atomic.ts";
import { InstallError } from "../errors.ts";

const NOW = new Date("2026-01-18T12:34:56.789Z");

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cit-atomic-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const list = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("backupStamp() is compact UTC", () => {
  assert.equal(backupStamp(NOW), "20260118T123456Z");
});

Deno.test("writeFileAtomic()", async (t) => {
  await t.step("creates parent dirs and a 0600 file", () =>
    withDir(async (dir) => {
      const p = `${dir}/a/b/.env`;
      const r = await writeFileAtomic(p, "A=1\n");
      assert.deepEqual(r, { changed: true });
      assert.equal(Deno.readTextFileSync(p), "A=1\n");
      assert.equal(Deno.statSync(p).mode! & 0o777, 0o600);
      assert.deepEqual(list(`${dir}/a/b`), [".env"]);
    }));

  await t.step("applies the requested mode despite the umask", () =>
    withDir(async (dir) => {
      const p = `${dir}/o.yaml`;
      await writeFileAtomic(p, "x", { mode: 0o644 });
      assert.equal(Deno.statSync(p).mode! & 0o777, 0o644);
      await writeFileAtomic(p, "y", { mode: 0o600 });
      assert.equal(Deno.statSync(p).mode! & 0o777, 0o600);
    }));

  await t.step("same content writes nothing and makes no backup", () =>
    withDir(async (dir) => {
      const p = `${dir}/.env`;
      await writeFileAtomic(p, "A=1\n");
      const ino = Deno.statSync(p).ino;
      const r = await writeFileAtomic(p, new TextEncoder().encode("A=1\n"), { backup: true });
      assert.deepEqual(r, { changed: false });
      assert.equal(Deno.statSync(p).ino, ino);
      assert.deepEqual(list(dir), [".env"]);
    }));

  await t.step(
    "backup holds the old content; backups are never overwritten",
    () =>
      withDir(async (dir) => {
        const p = `${dir}/.env`;
        Deno.writeTextFileSync(p, "OLD\n");
        const r1 = await writeFileAtomic(p, "NEW1\n", { backup: true, now: NOW });
        assert.equal(r1.backup, `${p}.bak-20260118T123456Z`);
        assert.equal(Deno.readTextFileSync(r1.backup!), "OLD\n");
        assert.equal(Deno.statSync(r1.backup!).mode! & 0o777, 0o600);
        const r2 = await writeFileAtomic(p, "NEW2\n", { backup: true, now: NOW });
        assert.equal(r2.backup, `${p}.bak-20260118T123456Z-1`);
        assert.equal(Deno.readTextFileSync(r2.backup!), "NEW1\n");
        assert.equal(Deno.readTextFileSync(r1.backup!), "OLD\n");
        assert.equal(Deno.readTextFileSync(p), "NEW2\n");
      }),
  );

  await t.step("no backup without backup: true, none for a new file", () =>
    withDir(async (dir) => {
      const p = `${dir}/.env`;
      const r0 = await writeFileAtomic(p, "A\n", { backup: true, now: NOW });
      assert.equal(r0.backup, undefined);
      const r1 = await writeFileAtomic(p, "B\n", { now: NOW });
      assert.equal(r1.backup, undefined);
      assert.deepEqual(list(dir), [".env"]);
    }));

  await t.step(
    "a crash before the rename leaves the original intact and no temp file",
    () =>
      withDir(async (dir) => {
        const p = `${dir}/.env`;
        Deno.writeTextFileSync(p, "ORIGINAL\n");
        let seenTmp = "";
        await assert.rejects(
          writeFileAtomic(p, "NEW\n", {
            beforeRename: (tmp) => {
              seenTmp = tmp;
              assert.equal(Deno.readTextFileSync(tmp), "NEW\n");
              throw new Error("simulated crash");
            },
          }),
          (e: unknown) => e instanceof InstallError && /simulated crash/.test(e.message),
        );
        assert.match(
          seenTmp,
          new RegExp(`^${p.replace(/\./g, "\\.")}\\.tmp-${Deno.pid}-[0-9a-f]+$`),
        );
        assert.equal(Deno.readTextFileSync(p), "ORIGINAL\n");
        assert.deepEqual(list(dir), [".env"]);
      }),
  );

  await t.step(
    "an unwritable target is an InstallError naming the file",
    () =>
      withDir(async (dir) => {
        Deno.writeTextFileSync(`${dir}/file`, "x");
        await assert.rejects(
          writeFileAtomic(`${dir}/file/sub/.env`, "A\n"),
          (e: unknown) =>
            e instanceof InstallError && e.message.startsWith(`Cannot write "${dir}/`),
        );
      }),
  );
});
