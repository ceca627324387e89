import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { ExitCode, InstallError } from "../errors.ts";
import { fromOsError } from "./runner.ts";
import { requireCheckout, requireWritable } from "./preflight.ts";

/** An error as Deno raises it for a failed system call. */
const osError = (message: string, code: string) => Object.assign(new Error(message), { code });

Deno.test("fromOsError(): a system error of a step is an InstallError saying what to do", async (t) => {
  const cases: [string, boolean, number, RegExp][] = [
    ["ENOSPC", true, ExitCode.Partial, /filesystem is full: free space/],
    ["EROFS", true, ExitCode.Partial, /read-only/],
    ["EACCES", false, ExitCode.Preflight, /Permission denied/],
    ["EIO", true, ExitCode.Partial, /I\/O error/],
    ["EWHATEVER", true, ExitCode.Partial, /refused it \(EWHATEVER\)/],
  ];
  for (const [code, changed, exit, hint] of cases) {
    await t.step(`${code}, host ${changed ? "changed" : "untouched"}: exit ${exit}`, () => {
      const e = fromOsError("models", osError(`boom (${code}): open '/m/x'`, code), changed);
      assert(e instanceof InstallError);
      assertEquals([e.exitCode, e.step], [exit, "models"]);
      assertMatch(e.message, /^Cannot finish the models step: boom/);
      assertMatch(e.hint!, hint);
      assertMatch(e.hint!, /run the same command again to resume/);
    });
  }
  await t.step("anything else is left as it is", () => {
    const bug = new TypeError("x is undefined");
    assertEquals(fromOsError("models", bug, true), bug);
    const ours = new InstallError("load", "Cannot load", ExitCode.Docker);
    assertEquals(fromOsError("load", ours, true), ours);
    assertEquals(fromOsError("load", "text", true), "text");
    const odd = osError("odd", "not-a-code");
    assertEquals(fromOsError("load", odd, true), odd);
  });
});

Deno.test("requireCheckout() and requireWritable()", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cit-host-checks-" });
  try {
    await t.step("a Cortex dir without backend/ is refused (exit 3)", async () => {
      const e = await assertRejects(
        () => requireCheckout(dir),
        InstallError,
        /no backend\/ folder/,
      );
      assertEquals(e.exitCode, ExitCode.Preflight);
      await Deno.writeTextFile(`${dir}/backend`, "");
      await assertRejects(() => requireCheckout(dir), InstallError, /backend is not a folder/);
      await Deno.remove(`${dir}/backend`);
      await Deno.mkdir(`${dir}/backend`);
      await requireCheckout(dir);
    });
    await t.step("a writable folder passes and keeps no probe", async () => {
      await requireWritable(dir, "models dir");
      await requireWritable(`${dir}/not/yet/there`, "models dir");
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["backend"]);
    });
    await t.step("a folder that cannot be written is refused naming it (exit 3)", async () => {
      // As root every mode is writable: a path under a file cannot be written by anyone.
      await Deno.writeTextFile(`${dir}/file`, "");
      const e = await assertRejects(
        () => requireWritable(`${dir}/file/models`, "models dir"),
        InstallError,
        /Cannot write into the models dir ".*\/file\/models"/,
      );
      assertEquals(e.exitCode, ExitCode.Preflight);
      assertMatch(e.hint!, /--models-dir/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
