import assert from "node:assert/strict";
import { compareReleases, defaultProfiles } from "./install.ts";
import { parseProfiles, parseWaitTimeout } from "../cli/install.ts";
import { UsageError } from "../errors.ts";

Deno.test("compareReleases() orders Cortex versions numerically", async (t) => {
  const cases: [string, string, number][] = [
    ["0.1.1", "0.1.1", 0],
    ["0.1.2", "0.1.1", 1],
    ["0.10.0", "0.9.1", 1],
    ["v0.2.0", "0.1.9", 1],
    ["0.1", "0.1.0", 0],
    ["0.1.1", "0.2.0", -1],
  ];
  for (const [a, b, want] of cases) {
    await t.step(`${a} vs ${b}`, () => assert.equal(compareReleases(a, b), want));
  }
});

Deno.test("defaultProfiles(): gpu only with a GPU and the nvidia runtime, linux on Linux", () => {
  assert.deepEqual(defaultProfiles({ state: "ok", nvidiaRuntime: true }, "linux"), [
    "gpu",
    "linux",
  ]);
  assert.deepEqual(defaultProfiles({ state: "ok", nvidiaRuntime: false }, "linux"), ["linux"]);
  assert.deepEqual(defaultProfiles({ state: "none", nvidiaRuntime: true }, "linux"), ["linux"]);
  assert.deepEqual(defaultProfiles({ state: "ok", nvidiaRuntime: true }, "darwin"), ["gpu"]);
});

Deno.test("--wait-timeout and --profiles are validated", () => {
  assert.equal(parseWaitTimeout("30"), 30);
  for (const bad of ["0", "-1", "1.5", "soon"]) {
    assert.throws(() => parseWaitTimeout(bad), UsageError, bad);
  }
  assert.deepEqual(parseProfiles("gpu, linux"), ["gpu", "linux"]);
  assert.deepEqual(parseProfiles(""), []);
  assert.equal(parseProfiles(undefined), undefined);
  assert.throws(() => parseProfiles("gpu;rm"), UsageError);
});
