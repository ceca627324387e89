import { assert, assertEquals, assertMatch, assertThrows } from "../../test/support/assert.ts";
import { InstallError, UsageError } from "../errors.ts";
import { loadReleasePolicies, policyForLine } from "../bundle/release.ts";
import { envRecord, parseEnv } from "./dotenv.ts";
import {
  planSettings02,
  type Settings02Input,
  settings02Lines,
  settings02Report,
} from "./settings02.ts";

const FIX = new URL("../../test/testdata/cortex-v0.2.0/", import.meta.url).pathname;
const EXAMPLE = Deno.readTextFileSync(`${FIX}.env.example`);
const PROD = Deno.readTextFileSync(`${FIX}docker.compose.prod.yaml`);
const DEV = Deno.readTextFileSync(`${FIX}docker.compose.dev.yaml`);
const POLICY = policyForLine(await loadReleasePolicies(), "0.2")!;

/** Planted values: none may appear in any line or report. */
const PASSWORD = "Planted-Admin-Pw-4471";
const GENERATED = ["1111aaaa".repeat(8), "2222bbbb".repeat(8)];

function input(over: Partial<Settings02Input> = {}): Settings02Input {
  let n = 0;
  return {
    policy: POLICY,
    composeFile: `${FIX}docker.compose.prod.yaml`,
    composeText: PROD,
    example: EXAMPLE,
    network: "offline",
    modelsDir: "/srv/models",
    hfCacheDir: "/srv/hf-cache",
    shippedImages: [{ role: "vllm", ref: "vllm/vllm-openai:v0.28.0-cu129" }],
    env: () => undefined,
    admin: { passwordFromFile: PASSWORD },
    generate: () => GENERATED[n++],
    ...over,
  };
}

function assertNoSecrets(text: string, secrets: string[]) {
  for (const s of secrets) assert(!text.includes(s), `a secret leaked: ${s.slice(0, 6)}…`);
}

async function composeConfig(envText: string | undefined): Promise<{ code: number; err: string }> {
  const dir = await Deno.makeTempDir({ prefix: "cit-settings02-" });
  try {
    await new Deno.Command("cp", { args: ["-r", `${FIX}.`, dir] }).output();
    if (envText !== undefined) await Deno.writeTextFile(`${dir}/.env`, envText);
    const r = await new Deno.Command("docker", {
      args: ["compose", "-f", "docker.compose.prod.yaml", "config", "--quiet"],
      cwd: dir,
      clearEnv: true,
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    }).output();
    return { code: r.code, err: new TextDecoder().decode(r.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const hasComposeV2 =
  (await new Deno.Command("docker", { args: ["compose", "version"] }).output().catch(() =>
    undefined
  ))
    ?.success ?? false;

Deno.test("planSettings02(): a fresh 0.2 checkout gets a root .env that prod compose renders", async () => {
  const p = planSettings02(input());
  assertEquals(p.production, true);
  assertEquals(p.rootEnv.created, true);
  const env = envRecord(parseEnv(p.rootEnv.after));
  assertEquals(env.INTERNAL_VLLM_API_KEY, GENERATED[0]);
  assertEquals(env.SESSION_SECRET, GENERATED[1]);
  assertEquals(env.ADMIN_BOOTSTRAP_USERNAME, "admin");
  assertEquals(env.ADMIN_BOOTSTRAP_PASSWORD, PASSWORD);
  assertEquals(env.CORS_ALLOW_ORIGINS, "http://localhost:3001");
  assertEquals(env.OFFLINE_MODE, "true");
  assertEquals(env.REQUIRE_IMAGE_PRECACHE, "true");
  assertEquals(env.OFFLINE_MODE_AUTO_DETECT, "false");
  assertEquals(env.VLLM_IMAGE, "vllm/vllm-openai:v0.28.0-cu129");
  assertEquals(env.CORTEX_MODELS_DIR, "/srv/models");
  assertEquals(env.HF_CACHE_DIR, "/srv/hf-cache");
  assertEquals(p.required, [
    "ADMIN_BOOTSTRAP_PASSWORD",
    "CORS_ALLOW_ORIGINS",
    "INTERNAL_VLLM_API_KEY",
    "SESSION_SECRET",
  ]);
  assertEquals(p.missingRequired, []);
  assertEquals(p.needsAdminPassword, false);
  assertEquals(p.overrideEnvironment, { OFFLINE_MODE_AUTO_DETECT: "${OFFLINE_MODE_AUTO_DETECT}" });
  assertEquals(p.problems.map((x) => [x.key, x.level]), [["POSTGRES_PASSWORD", "warning"]]);
  assertEquals(p.secrets.map((s) => s.shown), ["(generated)", "(generated)"]);
  // Only the root .env: nothing in the plan names backend/.env as a file to write.
  assert(!JSON.stringify(settings02Report(p)).includes("backend/.env"));

  const lines = settings02Lines(p, "/srv/Cortex/.env").join("\n");
  assertMatch(lines, /INTERNAL_VLLM_API_KEY \(generated\)/);
  assertMatch(lines, /first admin: admin \(default\), password \(from --admin-password-file\)/);
  assertMatch(lines, /CORS_ALLOW_ORIGINS: http:\/\/localhost:3001 \(default/);
  const everything = lines + JSON.stringify(settings02Report(p));
  assertNoSecrets(everything, [PASSWORD, ...GENERATED]);

  if (hasComposeV2) {
    // The real prod compose file refuses without the `:?` keys and renders with our .env.
    const without = await composeConfig(undefined);
    assert(without.code !== 0);
    assertMatch(without.err, /INTERNAL_VLLM_API_KEY|SESSION_SECRET|ADMIN_BOOTSTRAP_PASSWORD|CORS/);
    const withOurs = await composeConfig(p.rootEnv.after);
    assertEquals(withOurs.code, 0, withOurs.err);
  }
});

Deno.test("planSettings02(): a re-run changes nothing and rotates nothing", () => {
  const first = planSettings02(input());
  const again = planSettings02(input({
    rootEnv: first.rootEnv.after,
    admin: {},
    generate: () => {
      throw new Error("a secret was generated on a re-run");
    },
  }));
  assertEquals(again.rootEnv.changed, false);
  assertEquals(again.rootEnv.changes, []);
  assertEquals(again.secrets.map((s) => s.source), ["kept", "kept"]);
  assertEquals(again.admin.shownPassword, "(set)");
  assertEquals(again.cors?.source, ".env");
});

Deno.test("planSettings02(): a short existing key is kept and reported, never rotated", () => {
  const short = EXAMPLE.replace("INTERNAL_VLLM_API_KEY=", "INTERNAL_VLLM_API_KEY=tooshort");
  const p = planSettings02(input({ rootEnv: short }));
  assertEquals(envRecord(parseEnv(p.rootEnv.after)).INTERNAL_VLLM_API_KEY, "tooshort");
  const e = p.problems.find((x) => x.key === "INTERNAL_VLLM_API_KEY")!;
  assertEquals(e.level, "error");
  assertMatch(e.message, /8 characters; production needs at least 16/);
  assertNoSecrets(settings02Lines(p).join("\n"), ["tooshort"]);
});

Deno.test("planSettings02(): no admin password anywhere: asked for, and compose would refuse", () => {
  const p = planSettings02(input({ admin: {} }));
  assertEquals(p.needsAdminPassword, true);
  assertEquals(p.missingRequired, ["ADMIN_BOOTSTRAP_PASSWORD"]);
  assertEquals(p.problems.filter((x) => x.key === "ADMIN_BOOTSTRAP_PASSWORD"), []);
  // From the environment, as Cortex's ensure-env.sh takes it.
  const e = planSettings02(input({
    admin: {},
    env: (k) => (k === "ADMIN_BOOTSTRAP_PASSWORD" ? PASSWORD : undefined),
  }));
  assertEquals([e.needsAdminPassword, e.admin.passwordSource], [false, "environment"]);
});

Deno.test("planSettings02(): --cors-origin is checked; the dev compose file is refused for 0.2", () => {
  const p = planSettings02(input({ corsOrigin: "https://cortex.example.com" }));
  assertEquals(p.cors, { value: "https://cortex.example.com", source: "flag" });
  assertEquals(p.problems.map((x) => x.key), ["POSTGRES_PASSWORD"]);
  const u = assertThrows(() => planSettings02(input({ corsOrigin: "*" })), UsageError);
  assertEquals(u.exitCode, 2);
  const d = assertThrows(
    () => planSettings02(input({ composeFile: `${FIX}docker.compose.dev.yaml`, composeText: DEV })),
    InstallError,
  );
  assertEquals(d.exitCode, 3);
  assertMatch(
    d.message,
    /docker\.compose\.dev\.yaml" with a Cortex 0\.2\.0 bundle: .*prod-target images/,
  );
  assertMatch(d.hint!, /docker\.compose\.prod\.yaml/);
});

Deno.test("planSettings02(): online hosts get the online keys", () => {
  const env = envRecord(parseEnv(planSettings02(input({ network: "online" })).rootEnv.after));
  assertEquals([env.OFFLINE_MODE, env.OFFLINE_MODE_AUTO_DETECT, env.REQUIRE_IMAGE_PRECACHE], [
    "false",
    "true",
    "false",
  ]);
});
