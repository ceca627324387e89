import { assert, assertEquals, assertMatch } from "../../test/support/assert.ts";
import { generateSecret, planSecrets } from "./secrets.ts";

const KEYS = ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"];

Deno.test("generateSecret() gives 64 hex characters from the CSPRNG, different each time", () => {
  const a = generateSecret();
  const b = generateSecret();
  assertMatch(a, /^[0-9a-f]{64}$/);
  assert(a !== b);
  // The bytes come from the injected source, all of them.
  assertEquals(generateSecret(4, (u) => u.fill(0xab)), "abababab");
});

Deno.test("planSecrets(): kept, from the environment, or generated; never rotated", async (t) => {
  let n = 0;
  const gen = () => `gen${++n}`.padEnd(64, "0");
  await t.step("blank in .env, nothing in the environment: generated", () => {
    const r = planSecrets(
      KEYS,
      { INTERNAL_VLLM_API_KEY: "", SESSION_SECRET: "  " },
      () => undefined,
      gen,
    );
    assertEquals(r.secrets.map((s) => [s.key, s.source, s.shown]), [
      ["INTERNAL_VLLM_API_KEY", "generated", "(generated)"],
      ["SESSION_SECRET", "generated", "(generated)"],
    ]);
    assertEquals(r.secrets[0].value, "gen1".padEnd(64, "0"));
  });
  await t.step("blank in .env, set in the environment: the environment's (ensure-env.sh)", () => {
    const r = planSecrets(
      KEYS,
      {},
      (k) => k === "SESSION_SECRET" ? "from-env-secret" : undefined,
      gen,
    );
    assertEquals(r.secrets.map((s) => s.source), ["generated", "environment"]);
    assertEquals(r.secrets[1].value, "from-env-secret");
  });
  await t.step("set in .env: kept, even when the environment says otherwise", () => {
    const before = n;
    const r = planSecrets(
      KEYS,
      { INTERNAL_VLLM_API_KEY: "existing-key-0123456789", SESSION_SECRET: "s".repeat(40) },
      (k) => (k === "INTERNAL_VLLM_API_KEY" ? "another-key-9999999999" : undefined),
      gen,
    );
    assertEquals(n, before, "nothing generated");
    assertEquals(r.secrets.map((s) => [s.source, s.value]), [
      ["kept", "existing-key-0123456789"],
      ["kept", "s".repeat(40)],
    ]);
    assertEquals(r.warnings.length, 1);
    assertMatch(r.warnings[0], /INTERNAL_VLLM_API_KEY in the environment differs.*never rotates/);
    assert(!r.warnings[0].includes("existing-key") && !r.warnings[0].includes("another-key"));
  });
});
