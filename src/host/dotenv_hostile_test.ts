/**
 * Issue 10 item 5: the .env editor's promises (every key set reads back under Compose v2 and
 * `bash .`; every other line keeps its bytes; a second run writes nothing) on hostile files.
 */
import assert from "node:assert/strict";
import { getEnv, parseEnv, renderEnv, setEnvKeys } from "./dotenv.ts";
import { planRootEnv } from "./env02.ts";
import { InstallError } from "../errors.ts";
import { bashRead, composeRead, hasComposeV2 } from "../../test/support/env_oracle.ts";

/** Sets `updates`, checks idempotence and that the other lines kept their bytes; returns the text. */
function setTwice(text: string, updates: Record<string, string>): string {
  const out = renderEnv(setEnvKeys(parseEnv(text), updates).doc);
  const again = setEnvKeys(parseEnv(out), updates);
  assert.deepEqual(again.changed, [], "a second run changes nothing");
  assert.equal(renderEnv(again.doc), out, "a second run writes the same bytes");
  for (const [k, v] of Object.entries(updates)) assert.equal(getEnv(parseEnv(out), k), v, k);
  return out;
}

const MULTI = 'NOTE="first line\nVLLM_IMAGE=old\nlast"\nA=1\n';

Deno.test("issue 10: a multi-line quoted value is opaque: its inner lines are never rewritten", () => {
  const out = setTwice(MULTI, { VLLM_IMAGE: "new" });
  assert.ok(out.startsWith(MULTI), "the quoted value keeps its bytes");
  assert.ok(out.endsWith("VLLM_IMAGE=new\n"));
  assert.equal(getEnv(parseEnv(out), "NOTE"), "first line\nVLLM_IMAGE=old\nlast");
});

Deno.test("issue 10: an empty value before a comment is written so that it reads back empty", () => {
  const out = setTwice("K=x # note\n", { K: "" });
  assert.equal(out, "K='' # note\n");
});

Deno.test("issue 10: a U+2028/U+2029 value is quoted and reads back; a lone CR is refused", () => {
  const out = setTwice("A=1\n", { A: "a\u2028b", B: "c\u2029d" });
  assert.equal(out.split("\n").filter((l) => l.startsWith("A=")).length, 1);
  assert.throws(
    () => setEnvKeys(parseEnv(""), { C: "x\ry" }),
    (e) => e instanceof InstallError && /C.*line break or a control character/.test(e.message),
  );
});

Deno.test("issue 10: keys outside [A-Za-z_][A-Za-z0-9_]* are refused, not written", async (t) => {
  for (const key of ["X\nEVIL", "1A", "A-B", "", "A B", "__proto__x=1"]) {
    await t.step(JSON.stringify(key), () => {
      assert.throws(
        () => setEnvKeys(parseEnv("A=1\n"), { [key]: "1" }),
        (e) => e instanceof InstallError && /not a variable name/.test(e.message),
      );
      assert.throws(() => planRootEnv({ current: "A=1\n", keys: { [key]: "1" } }), InstallError);
    });
  }
});

Deno.test("issue 10: a line of 200k spaces is parsed in one pass and kept", () => {
  const text = "A=x" + " ".repeat(200_000) + "y\nB=1\n";
  const out = setTwice(text, { B: "2" });
  assert.equal(getEnv(parseEnv(out), "A"), "x" + " ".repeat(200_000) + "y");
});

Deno.test("issue 10: what the editor writes reads back under bash and Compose v2", async () => {
  const updates = {
    K: "",
    VLLM_IMAGE: "vllm/vllm-openai:v0.6.3",
    SPACED: "a b # c",
    DOLLAR: 'p$ss`w\\d"',
    QUOTE: "it's",
    U: "a\u2028b",
    HASH: "x#y",
  };
  const out = setTwice("K=x # note\n" + MULTI, updates);
  const keys = [...Object.keys(updates), "NOTE"];
  const want = [...Object.values(updates), "first line\nVLLM_IMAGE=old\nlast"];
  // VLLM_IMAGE inside NOTE is not a key: the appended line sets it.
  assert.deepEqual(await bashRead(out, keys), want);
  if (await hasComposeV2()) assert.deepEqual(await composeRead(out, keys), want);
});

Deno.test("fuzz finding: a key appended after a quote that never closes is refused, not swallowed", () => {
  // The appended `NEW="x#y"` would close the quote opened on line 1: NEW would not be set.
  assert.throws(
    () => setEnvKeys(parseEnv('B="open\nA=1\n'), { NEW: "x#y" }),
    (e) => e instanceof InstallError && /NEW.*line 1 opens a quoted value/.test(e.message),
  );
});

Deno.test("fuzz finding: `K = v` and `K=   # c` lines are rewritten so that bash reads them too", async () => {
  const text = "A = 1\nB=         # create the first admin\n";
  const out = setTwice(text, { A: "2", B: "/var/cortex/models" });
  assert.equal(out, "A=2\nB=/var/cortex/models\n");
  assert.deepEqual(await bashRead(out, ["A", "B"]), ["2", "/var/cortex/models"]);
});
