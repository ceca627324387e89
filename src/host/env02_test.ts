import { assert, assertEquals, assertMatch, assertThrows } from "../../test/support/assert.ts";
import { InstallError } from "../errors.ts";
import { loadReleasePolicies, policyForLine } from "../bundle/release.ts";
import { APPEND_HEADER, getEnv, parseEnv } from "./dotenv.ts";
import {
  missingRequiredKeys,
  overrideEnvironment,
  planRootEnv,
  requiredComposeKeys,
  serviceEnvironmentKeys,
  shellQuote,
} from "./env02.ts";

const FIX = new URL("../../test/testdata/cortex-v0.2.0/", import.meta.url).pathname;
const EXAMPLE = Deno.readTextFileSync(`${FIX}.env.example`);
const PROD = Deno.readTextFileSync(`${FIX}docker.compose.prod.yaml`);
const DEV = Deno.readTextFileSync(`${FIX}docker.compose.dev.yaml`);

/** Values that are hard to keep intact in a file both bash and compose read. */
const TRICKY: Record<string, string> = {
  K_PLAIN: "vllm/vllm-openai:v0.28.0",
  K_SPACE: "two words",
  K_DOLLAR: "pa$$word${HOME}",
  K_HASH: "a#b #c",
  K_DQUOTE: 'say "hi"',
  K_SQUOTE: "it's",
  K_BACKSLASH: "C:\\path\\x",
  K_BACKTICK: "a`id`b",
  K_SEMICOLON: "a;touch /tmp/pwned;b",
  K_URLS: "http://localhost:3001,https://cortex.example.com",
  K_EMPTY: "",
};

Deno.test("shellQuote(): bare, single, double quotes, or a refusal that hides the value", async (t) => {
  const cases: [string, string | RegExp][] = [
    ["abc-1.2_3:/x@y", "abc-1.2_3:/x@y"],
    ["two words", "'two words'"],
    ["pa$$word", "'pa$$word'"],
    ["a;b", "'a;b'"],
    ["it's", `"it's"`],
    ["it's $HOME", /single quote together with one of/],
    ["line\nbreak", /newline or a control character/],
  ];
  for (const [v, want] of cases) {
    await t.step(JSON.stringify(v), () => {
      const q = shellQuote(v);
      if (typeof want === "string") assertEquals(q, { text: want });
      else {
        assert("error" in q);
        assertMatch(q.error, want);
        assert(!q.error.includes(v), "the value is not in the error");
      }
    });
  }
});

Deno.test("a root .env written by planRootEnv() reads back the same in bash and in docker compose", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-env02-" });
  try {
    const plan = planRootEnv({ current: "# mine\nK_PLAIN=old\n", keys: TRICKY });
    await Deno.writeTextFile(`${dir}/.env`, plan.after);
    const keys = Object.keys(TRICKY);
    // bash `.` (what Cortex's verify-offline does): nothing runs, every value intact.
    const sh = await new Deno.Command("bash", {
      args: ["-c", `set -a; . ./.env; printf '%s\\0' ${keys.map((k) => `"$${k}"`).join(" ")}`],
      cwd: dir,
      env: { HOME: "/home/x" },
      clearEnv: true,
    }).output();
    assertEquals(sh.code, 0, new TextDecoder().decode(sh.stderr));
    const got = new TextDecoder().decode(sh.stdout).split("\0").slice(0, -1);
    assertEquals(Object.fromEntries(keys.map((k, i) => [k, got[i]])), TRICKY);
    // docker compose v2 interpolation from the same file, when compose v2 is here.
    const v2 = await new Deno.Command("docker", { args: ["compose", "version"] }).output()
      .catch(() => undefined);
    if (v2?.success) {
      const env = keys.map((k) => `      ${k}: "\${${k}}"`).join("\n");
      await Deno.writeTextFile(
        `${dir}/compose.yaml`,
        `services:\n  s:\n    image: busybox\n    environment:\n${env}\n`,
      );
      const c = await new Deno.Command("docker", {
        args: ["compose", "-p", "citenv", "-f", "compose.yaml", "config", "--format", "json"],
        cwd: dir,
        clearEnv: true,
        env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: "/home/x" },
      }).output();
      assertEquals(c.code, 0, new TextDecoder().decode(c.stderr));
      const cfg = JSON.parse(new TextDecoder().decode(c.stdout));
      const seen = cfg.services.s.environment as Record<string, string | null>;
      for (const k of keys) {
        // `config` prints a compose file, so it writes a literal `$` of a value as `$$`.
        assertEquals((seen[k] ?? "").replaceAll("$$", "$"), TRICKY[k], k);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planRootEnv() starts from Cortex's .env.example and keeps every other byte", () => {
  const keys = {
    INTERNAL_VLLM_API_KEY: "a".repeat(64),
    OFFLINE_MODE: "true",
    CORS_ALLOW_ORIGINS: "http://localhost:3001",
    OFFLINE_MODE_AUTO_DETECT: "false",
  };
  const p = planRootEnv({ example: EXAMPLE, keys });
  assertEquals(p.created, true);
  assertEquals(p.mode, 0o600);
  const before = EXAMPLE.split("\n");
  const after = p.after.split("\n");
  // Blank key set in place; false -> true in place; the commented #CORS line taken over.
  const changed = before.map((l, i) => [l, after[i]]).filter(([a, b]) => a !== b);
  assertEquals(changed, [
    ["#CORS_ALLOW_ORIGINS=https://cortex.example.com", "CORS_ALLOW_ORIGINS=http://localhost:3001"],
    ["INTERNAL_VLLM_API_KEY=", `INTERNAL_VLLM_API_KEY=${"a".repeat(64)}`],
    ["OFFLINE_MODE=false", "OFFLINE_MODE=true"],
  ]);
  // The one key Cortex's file does not mention is appended once, under our header.
  assertEquals(after.slice(before.length - 1), [
    "",
    APPEND_HEADER,
    "OFFLINE_MODE_AUTO_DETECT=false",
    "",
  ]);
  const doc = parseEnv(p.after);
  for (const [k, v] of Object.entries(keys)) assertEquals(getEnv(doc, k), v);
  // Secrets never appear in the change list.
  assertEquals(p.changes.find((c) => c.key === "INTERNAL_VLLM_API_KEY")?.new, "***");
  assert(!JSON.stringify(p.changes).includes("aaaa"));
  // Twice: nothing changes.
  const again = planRootEnv({ current: p.after, example: EXAMPLE, keys });
  assertEquals(again.changed, false);
  assertEquals(again.after, p.after);
  assertEquals(again.changes, []);
});

Deno.test("planRootEnv() names the key, never the value, when a value cannot be written", () => {
  const e = assertThrows(
    () => planRootEnv({ keys: { ADMIN_BOOTSTRAP_PASSWORD: "it's $ecret" } }),
    InstallError,
    /Cannot write ADMIN_BOOTSTRAP_PASSWORD to the root \.env/,
  );
  assert(!e.message.includes("ecret") && !(e.hint ?? "").includes("ecret"));
});

Deno.test("requiredComposeKeys() finds Cortex 0.2's `:?` keys, as the 0.2 policy lists them", async () => {
  const policy = policyForLine(await loadReleasePolicies(), "0.2")!;
  assertEquals(
    requiredComposeKeys(PROD),
    [...policy.settings.required["docker.compose.prod.yaml"]].sort(),
  );
  assertEquals(requiredComposeKeys(DEV), policy.settings.required["docker.compose.dev.yaml"]);
  assertEquals(requiredComposeKeys("a: $${NOT:?x} ${YES?y} $$$${ALSO:?z}"), ["YES"]);
  // A comment requires nothing (compose interpolates values only).
  assertEquals(requiredComposeKeys("# ${KEY:?...} in a comment\nb: ${REAL:?x} # ${NOPE:?}\n"), [
    "REAL",
  ]);
  assertEquals(
    missingRequiredKeys(["A", "B", "C"], (k) => ({ A: "x", B: "" } as Record<string, string>)[k]),
    ["B", "C"],
  );
});

Deno.test("overrideEnvironment(): only keys no gateway `environment:` entry carries", () => {
  const keys = ["OFFLINE_MODE", "OFFLINE_MODE_AUTO_DETECT", "REQUIRE_IMAGE_PRECACHE", "VLLM_IMAGE"];
  assertEquals(overrideEnvironment(PROD, "gateway", keys), {
    OFFLINE_MODE_AUTO_DETECT: "${OFFLINE_MODE_AUTO_DETECT}",
  });
  // The dev file does not carry REQUIRE_IMAGE_PRECACHE (cortex-0.2-facts §3).
  assertEquals(overrideEnvironment(DEV, "gateway", keys), {
    OFFLINE_MODE_AUTO_DETECT: "${OFFLINE_MODE_AUTO_DETECT}",
    REQUIRE_IMAGE_PRECACHE: "${REQUIRE_IMAGE_PRECACHE}",
  });
  // A list-form environment (the dcgm-exporter service) is read too.
  assert(serviceEnvironmentKeys(PROD, "dcgm-exporter").has("NVIDIA_VISIBLE_DEVICES"));
});
