import { assert, assertEquals } from "../../test/support/assert.ts";
import { appendAudit, type AuditInput, auditPath, currentUser, readAudit } from "./audit.ts";

function entry(n: number, extra: Partial<AuditInput> = {}): AuditInput {
  return {
    time: `2026-01-18T12:00:0${n}.000Z`,
    user: "root",
    command: ["install", "--bundle", "/media/b", "--hf-token", "hf_SECRET", "HF_TOKEN=hf_SECRET"],
    bundleDigest: "sha256:" + "d".repeat(64),
    artifacts: [
      { path: "postgres-16.tar", verdict: "ok", sha256: "a".repeat(64) },
      {
        path: "redis-7.tar",
        verdict: "mismatch",
        detail: "sha256 is 3f2a…, the bundle lists 9c1d…",
      },
    ],
    outcome: n % 2 ? "failed" : "ok",
    exitCode: n % 2 ? 4 : 0,
    durationMs: 1000 + n,
    ...extra,
  };
}

Deno.test("appendAudit() and readAudit()", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cit-state-audit-" });
  try {
    const state = `${dir}/state`;
    await t.step("a missing log reads as empty", async () => {
      assertEquals(await readAudit(state), { entries: [], badLines: 0 });
    });
    await t.step("entries are appended as JSON lines, secrets redacted", async () => {
      await appendAudit(state, entry(0));
      await appendAudit(state, entry(1));
      const text = await Deno.readTextFile(auditPath(state));
      assertEquals(text.split("\n").length, 3); // two lines and the final newline
      assert(!text.includes("hf_SECRET"), text);
      const { entries, badLines } = await readAudit(state);
      assertEquals(badLines, 0);
      assertEquals(entries.length, 2);
      assertEquals(entries[0].command, [
        "install",
        "--bundle",
        "/media/b",
        "--hf-token",
        "***",
        "HF_TOKEN=***",
      ]);
      assertEquals(entries[1].artifacts[1].verdict, "mismatch");
      assertEquals(entries[1].outcome, "failed");
      assertEquals((await Deno.stat(auditPath(state))).mode! & 0o777, 0o600);
    });
    await t.step("a partial last line (crash mid-write) is skipped and not glued to", async () => {
      const before = await Deno.readTextFile(auditPath(state));
      const partial = JSON.stringify(entry(2)).slice(0, 57);
      await Deno.writeTextFile(auditPath(state), partial, { append: true });
      let r = await readAudit(state);
      assertEquals(r.entries.length, 2);
      assertEquals(r.badLines, 1);
      await appendAudit(state, entry(3));
      r = await readAudit(state);
      assertEquals(r.entries.map((e) => e.durationMs), [1000, 1001, 1003]);
      assertEquals(r.badLines, 1);
      // Never rewritten: the old bytes are still the start of the file.
      assert((await Deno.readTextFile(auditPath(state))).startsWith(before + partial + "\n"));
    });
    await t.step("a valid JSON line that is not an entry counts as bad", async () => {
      await Deno.writeTextFile(auditPath(state), '{"hello":1}\n', { append: true });
      const r = await readAudit(state);
      assertEquals(r.entries.length, 3);
      assertEquals(r.badLines, 2);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("appendAudit() from concurrent writers keeps every line whole", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-state-audit-" });
  try {
    const big = "x".repeat(20_000); // well over PIPE_BUF: O_APPEND still keeps writes whole
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => appendAudit(dir, entry(i % 10, { error: big + i }))),
    );
    const r = await readAudit(dir);
    assertEquals(r.badLines, 0);
    assertEquals(r.entries.length, 20);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("currentUser() reads USER and SUDO_USER, else asks id", async (t) => {
  const cases: [string, Record<string, string>, { user: string; sudoUser?: string }][] = [
    ["USER", { USER: "alice" }, { user: "alice" }],
    ["sudo", { USER: "root", SUDO_USER: "alice" }, { user: "root", sudoUser: "alice" }],
    ["LOGNAME", { LOGNAME: "bob" }, { user: "bob" }],
  ];
  for (const [name, env, want] of cases) {
    await t.step(name, async () => assertEquals(await currentUser((k) => env[k]), want));
  }
  await t.step("no variables: id -un", async () => {
    const out = await new Deno.Command("id", { args: ["-un"] }).output();
    const want = new TextDecoder().decode(out.stdout).trim();
    assert(want.length > 0);
    assertEquals(await currentUser(() => undefined), { user: want });
  });
});
