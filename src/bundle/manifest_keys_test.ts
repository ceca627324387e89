/** Issue 10 items 3-5: keys and sizes of manifests are checked where they enter. */
import assert from "node:assert/strict";
import { InstallError } from "../errors.ts";
import { parseAdminManifest } from "./manifests.ts";
import {
  EMBEDDED_MANIFEST_URL,
  loadReleasePolicies,
  MAX_RELEASE_MANIFEST_BYTES,
  parseReleasePolicies,
} from "./release.ts";

const embedded = () => JSON.parse(Deno.readTextFileSync(EMBEDDED_MANIFEST_URL));

/** Puts `key` into every env map of every line of the embedded manifest. */
function withEnvKey(key: string): string {
  const m = embedded();
  const lines = Array.isArray(m.lines) ? m.lines : [m];
  for (const l of lines) l.env.offline[key] = "1";
  return JSON.stringify(m);
}

Deno.test("issue 10: --manifest env keys outside [A-Za-z_][A-Za-z0-9_]* are refused", async (t) => {
  // The embedded manifest parses as is.
  parseReleasePolicies(withEnvKey("GOOD_KEY"), "m.json");
  for (const key of ["X\nEVIL", "1X", "A-B", "A=B", ""]) {
    await t.step(JSON.stringify(key), () => {
      assert.throws(() => parseReleasePolicies(withEnvKey(key), "m.json"), InstallError);
    });
  }
});

Deno.test("issue 10: a --manifest over the size cap is refused naming the cap", async () => {
  const p = await Deno.makeTempFile({ prefix: "cit-manifest-" });
  try {
    const f = await Deno.open(p, { write: true });
    await f.truncate(MAX_RELEASE_MANIFEST_BYTES + 1);
    f.close();
    await assert.rejects(
      loadReleasePolicies(p),
      (e) => e instanceof InstallError && /manifest size cap/.test(e.message),
    );
  } finally {
    await Deno.remove(p);
  }
});

Deno.test("issue 10: Admin-UI settings keys are checked and cannot reach Object.prototype", async (t) => {
  await t.step("a newline in a settings key is refused", () => {
    assert.throws(
      () =>
        parseAdminManifest(
          JSON.stringify({ settings: { "X\nEVIL": "1", VLLM_IMAGE: "v" } }),
          "manifest.json",
        ),
      (e) => e instanceof InstallError && /not a variable name/.test(e.message),
    );
  });
  await t.step("__proto__ is a plain key", () => {
    const m = parseAdminManifest(
      '{"settings": {"__proto__": "x", "VLLM_IMAGE": "m"}}',
      "manifest.json",
    );
    assert.equal(Object.getPrototypeOf(m.settings), null);
    assert.equal(m.settings.toString, undefined);
  });
});

Deno.test("issue 10: refs with whitespace are refused in manifest.json and images.json", async (t) => {
  const { parseScriptManifest } = await import("./manifests.ts");
  const { parseImagesJson } = await import("./bundle02.ts");
  for (const ref of ["postgres:16 x", "postgres:16\n", " postgres:16", "post\tgres"]) {
    await t.step(JSON.stringify(ref), () => {
      const m = { images: { infrastructure: [{ name: ref, file: "images/p.tar" }] } };
      assert.throws(() => parseScriptManifest(JSON.stringify(m), "manifest.json"), InstallError);
      const entry = { ref, file: "images/p.tar" };
      // The same entry with a good ref parses.
      parseImagesJson(JSON.stringify([{ ...entry, ref: "postgres:16" }]), "images.json");
      assert.throws(
        () => parseImagesJson(JSON.stringify([entry]), "images.json"),
        InstallError,
      );
    });
  }
});
