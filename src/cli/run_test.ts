import { assertEquals } from "../../test/support/assert.ts";
import { ExitCode, InstallError, InterruptedError, partialError, UsageError } from "../errors.ts";
import { describeError } from "./run.ts";
import { EXIT_CODES_HELP } from "./flags.ts";

Deno.test("describeError() names each kind; an unknown error is internal, not an interruption", () => {
  assertEquals(describeError(new Error("boom")), { kind: "internal", message: "boom" });
  assertEquals(describeError("text"), { kind: "internal", message: "text" });
  assertEquals(describeError(new InterruptedError()).kind, "interrupted");
  assertEquals(describeError(new UsageError("bad", "hint")), {
    kind: "usage",
    message: "bad",
    hint: "hint",
  });
  const e = partialError("settings", "Cannot write x", "fix it");
  assertEquals([e.exitCode, describeError(e)], [ExitCode.Partial, {
    kind: "install",
    step: "settings",
    message: "Cannot write x",
    hint: "fix it",
    detail: undefined,
  }]);
  assertEquals(describeError(new InstallError("load", "m", ExitCode.Docker)).step, "load");
});

Deno.test("--help and the README list every exit code", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  for (const code of Object.values(ExitCode)) {
    assertEquals(new RegExp(`^\\| ${code} +\\|`, "m").test(readme), true, `README: ${code}`);
    assertEquals(new RegExp(`^ {2}${code} +\\S`, "m").test(EXIT_CODES_HELP), true, `help: ${code}`);
  }
});
