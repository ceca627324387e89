/**
 * The `register` step (issue 9 §5) against a fake Cortex API (test/support/fake_cortex.ts), and
 * its plan on Cortex's real 0.2 compose file: the gateway's path of the bundle through its bind
 * mounts and CORTEX_TRANSFER_DIRS, the refusal of a bundle outside every transfer dir.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { fakeCortex } from "../../test/support/fake_cortex.ts";
import { ScriptedDocker } from "../../test/support/scripted_docker.ts";
import { createContext } from "../context.ts";
import { ExitCode, InstallError } from "../errors.ts";
import { readCompose } from "../host/compose.ts";
import { planRegister, type RegisterPlan } from "../host/register.ts";
import type { Bundle } from "../bundle/types.ts";
import { registerModelsStep } from "./register_models.ts";
import { installOptions, type InstallRun, type Prepared } from "./types.ts";
import { recordInstalled } from "./runner.ts";
import type { Journal, Release } from "../state/journal.ts";

const PASSWORD = "pw-" + crypto.randomUUID();
const CORTEX_02 = join(import.meta.dirname!, "../../test/testdata/cortex-v0.2.0");

function run(plan: RegisterPlan, f: typeof fetch, password: string | undefined = PASSWORD) {
  const out: string[] = [];
  const ctx = createContext({
    docker: new ScriptedDocker(),
    fetch: f,
    sink: { write: (t) => void out.push(t), isTTY: false },
    sleep: () => Promise.resolve(),
    interactive: false,
    env: {},
  });
  const r = {
    ctx,
    options: installOptions({ bundleDir: plan.hostPath, cortexDir: "/x", composeFile: "/x/c" }),
    prepared: {
      register: plan,
      settings02: { admin: { user: plan.user, password } },
      plan: { bundle: { release: "0.2.0" } },
    } as unknown as Prepared,
    journal: {},
    report: {},
    verdicts: [],
    dbEvents: [],
  } as unknown as InstallRun;
  return { r, out };
}

const PLAN: RegisterPlan = {
  models: ["qwen-small", "embed"],
  containerPath: "/host/media/usb/bundle",
  hostPath: "/media/usb/bundle",
  conflict: "skip",
  user: "admin",
  baseUrl: "http://127.0.0.1:8084",
};

Deno.test("register: created on the first run, skipped on the second; files and images left to the installer", async () => {
  const cortex = fakeCortex({
    user: "admin",
    password: PASSWORD,
    path: PLAN.containerPath,
    models: PLAN.models,
  });
  const first = run(PLAN, cortex.fetch);
  const a = await registerModelsStep.run(first.r);
  assertEquals(
    a.report?.register?.models.map((m) => [m.source, m.status]),
    [["qwen-small", "created"], ["embed", "created"]],
  );
  const imp = cortex.seen.find((s) => s.path === "/admin/bundles/import")!;
  assertEquals(
    [imp.body.path, imp.body.copy_files, imp.body.load_images, imp.body.conflict],
    [PLAN.containerPath, false, false, "skip"],
  );
  const second = run(PLAN, cortex.fetch);
  const b = await registerModelsStep.run(second.r);
  assertEquals(b.report?.register?.models.map((m) => m.status), ["skipped", "skipped"]);
  assertEquals([...cortex.registered].sort(), ["embed", "qwen-small"], "registered once");
  // No password in what people or machines read.
  const text = [...first.out, ...second.out, JSON.stringify(a), JSON.stringify(b)].join("\n");
  assert(!text.includes(PASSWORD), text);
  assertMatch(first.out.join(""), /model qwen-small: created/);
});

Deno.test("register: rename and replace are passed to Cortex and reported", async () => {
  for (const [conflict, want] of [["rename", "created as qwen-small-2"], ["replace", "replaced"]]) {
    const cortex = fakeCortex({
      user: "admin",
      password: PASSWORD,
      path: PLAN.containerPath,
      models: ["qwen-small"],
      registered: ["qwen-small"],
    });
    const { r, out } = run(
      { ...PLAN, models: ["qwen-small"], conflict } as RegisterPlan,
      cortex.fetch,
    );
    await registerModelsStep.run(r);
    assertMatch(out.join(""), new RegExp(`model qwen-small: ${want}`));
  }
});

Deno.test("register: a failure exits 7 (no rollback of a healthy stack), says what to do, no password", async (t) => {
  await t.step("--model-conflict error meets a registered name", async () => {
    const cortex = fakeCortex({
      user: "admin",
      password: PASSWORD,
      path: PLAN.containerPath,
      models: PLAN.models,
      registered: ["embed"],
    });
    const { r } = run({ ...PLAN, conflict: "error" }, cortex.fetch);
    const e = await assertRejects(() => registerModelsStep.run(r), InstallError);
    assertEquals(e.exitCode, ExitCode.Partial);
    assertMatch(e.message, /import job failed: Model 'embed' already exists/);
    assertMatch(e.hint!, /--model-conflict skip, rename or replace/);
  });
  await t.step("the admin's password is refused", async () => {
    const cortex = fakeCortex({
      user: "admin",
      password: "another-" + PASSWORD,
      path: PLAN.containerPath,
      models: PLAN.models,
    });
    const { r, out } = run(PLAN, cortex.fetch);
    const e = await assertRejects(() => registerModelsStep.run(r), InstallError);
    assertEquals(e.exitCode, ExitCode.Partial);
    assertMatch(e.message, /"admin"/);
    assert(!`${e.message} ${e.hint} ${out.join("")}`.includes(PASSWORD));
    assert(!cortex.seen.some((s) => s.path.startsWith("/admin/bundles/import")));
  });
});

function bundleAt(dir: string): Bundle {
  return {
    dir,
    models: [{
      kind: "bundle-model",
      name: "qwen-small",
      path: "models/qwen-small",
      manifest: "models/qwen-small/manifest.json",
      targets: ["qwen-small"],
      files: [],
    }],
  } as unknown as Bundle;
}

Deno.test("planRegister() on Cortex 0.2's real prod compose: the gateway's path, or a refusal with the fix", async (t) => {
  const m = await readCompose(join(CORTEX_02, "docker.compose.prod.yaml"), {
    env: {
      SESSION_SECRET: "s",
      ADMIN_BOOTSTRAP_PASSWORD: "p",
      CORS_ALLOW_ORIGINS: "http://x",
      INTERNAL_VLLM_API_KEY: "k",
      CORTEX_EXPORT_DIR: "/srv/cortex-exports",
    },
  });
  const gateway = m.services.find((s) => s.name === "gateway");
  const input = {
    gateway,
    readinessUrl: "http://127.0.0.1:8084/health",
    conflict: "skip" as const,
    user: "admin",
  };
  await t.step("/media/usb -> /host/media/usb; the exports dir through its mount", async () => {
    const a = await planRegister({ ...input, bundle: bundleAt("/media/usb/cortex-bundle") });
    assertEquals(a.plan?.containerPath, "/host/media/usb/cortex-bundle");
    assertEquals(a.plan?.baseUrl, "http://127.0.0.1:8084");
    const b = await planRegister({ ...input, bundle: bundleAt("/srv/cortex-exports/b1") });
    assertEquals(b.plan?.containerPath, "/var/cortex/exports/b1");
  });
  await t.step("outside every transfer dir: exit 3 naming the dirs and the fix", async () => {
    const e = await assertRejects(
      () => planRegister({ ...input, bundle: bundleAt("/var/cortex/models/b") }),
      InstallError,
    );
    assertEquals(e.exitCode, ExitCode.Preflight);
    assertMatch(e.message, /is outside every transfer dir of the Cortex gateway/);
    assertMatch(e.hint!, /Move or copy the bundle under .*\/media/);
    assertMatch(e.hint!, /--skip-register/);
  });
  await t.step("no model records, or a reason to skip: nothing is planned", async () => {
    const none = await planRegister({
      ...input,
      bundle: { dir: "/srv/x", models: [] } as unknown as Bundle,
    });
    assertEquals(none, {});
    const s = await planRegister({ ...input, bundle: bundleAt("/srv/x"), skip: "--skip-register" });
    assertEquals(s, { skipped: "--skip-register" });
  });
});

Deno.test("recordInstalled(): a run of the current bundle updates its record, keeping the first run's backups", () => {
  const rel = (digest: string, backup?: string) =>
    ({
      release: "0.2.0",
      bundleDigest: digest,
      bundleDir: "/b",
      installedAt: "t",
      engineRefs: {},
      images: {},
      envFiles: { "/c/.env": { sha256: "a".repeat(64), ...(backup ? { backup } : {}) } },
      outcome: "installed",
    }) as Release;
  const j = { releases: [] as Release[], current: undefined } as unknown as Journal;
  recordInstalled(j, { ...rel("sha256:01"), release: "0.1.1" });
  recordInstalled(j, rel("sha256:02", "/c/.env.bak-1"));
  // A re-run (or the end of a run whose register failed): one record, the first backup kept.
  const idx = recordInstalled(j, rel("sha256:02", "/c/.env.bak-2"));
  assertEquals(j.releases.length, 2);
  assertEquals([idx, j.current], [1, 1]);
  assertEquals(j.releases[1].envFiles["/c/.env"].backup, "/c/.env.bak-1");
  // Another bundle is a new record.
  recordInstalled(j, rel("sha256:03"));
  assertEquals(j.releases.length, 3);
});
