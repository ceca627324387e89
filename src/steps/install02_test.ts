/**
 * `install` of Cortex 0.2 bundles through the Docker seam (a scripted engine, no network, no
 * GPU): the release line chosen from bundle.json and the checkout, settings in the root .env
 * only (secrets generated once, never rotated), the first admin, the compose file validated by
 * `compose config` before the first write, engine builds chosen by driver, models placed at
 * `<models dir>/<path>` readable by the gateway's uid 1000, and the refusals (dev compose file,
 * Compose v1, no admin password) before anything is written.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { fakeClock, ScriptedDocker } from "../../test/support/scripted_docker.ts";
import { hostlessDoctor } from "../../test/support/install_world.ts";
import {
  type Built02,
  corrupt02,
  DEFAULT_MODEL,
  fakeBundle02,
} from "../../test/support/bundle02.ts";
import { CORTEX_02, policy02Text } from "../../test/support/cortex02.ts";
import { type Context, createContext } from "../context.ts";
import type { RunResult } from "../docker.ts";
import { ExitCode, InstallError, UsageError } from "../errors.ts";
import { COMPOSE_OVERRIDE } from "../layout.ts";
import { readJournal } from "../state/journal.ts";
import { envRecord, parseEnv } from "../host/dotenv.ts";
import { runInstall } from "./install.ts";
import { type InstallOptions, installOptions } from "./types.ts";

const ADMIN_PW = "cit-admin-pw-0123456789";

/** A small 0.2-like prod compose: literal images (the scripted engine does not interpolate). */
function compose02(prefix: string): string {
  return `name: cortex
services:
  postgres:
    image: ${prefix}/postgres:16
    network_mode: host
  gateway:
    image: ${prefix}/cortex-gateway:0.2.0
    network_mode: host
    environment:
      INTERNAL_VLLM_API_KEY: \${INTERNAL_VLLM_API_KEY:?set INTERNAL_VLLM_API_KEY}
      SESSION_SECRET: \${SESSION_SECRET:?set SESSION_SECRET}
      ADMIN_BOOTSTRAP_USERNAME: \${ADMIN_BOOTSTRAP_USERNAME:-admin}
      ADMIN_BOOTSTRAP_PASSWORD: \${ADMIN_BOOTSTRAP_PASSWORD:?set ADMIN_BOOTSTRAP_PASSWORD}
      CORS_ALLOW_ORIGINS: \${CORS_ALLOW_ORIGINS:?set CORS_ALLOW_ORIGINS}
      VLLM_IMAGE: \${VLLM_IMAGE:-vllm/vllm-openai:v0.28.0}
      OFFLINE_MODE: \${OFFLINE_MODE:-false}
      REQUIRE_IMAGE_PRECACHE: \${REQUIRE_IMAGE_PRECACHE:-false}
      CORTEX_MODELS_DIR_HOST: \${CORTEX_MODELS_DIR:-/var/cortex/models}
`;
}

class World02 {
  readonly clock = fakeClock();
  readonly log: string[] = [];
  readonly probed: string[] = [];
  private constructor(readonly root: string, readonly b: Built02) {}

  get prefix() {
    return this.b.prefix;
  }
  get cortexDir() {
    return join(this.root, "Cortex");
  }
  get composeFile() {
    return join(this.cortexDir, "docker.compose.prod.yaml");
  }
  get modelsDir() {
    return join(this.root, "models");
  }
  get stateDir() {
    return join(this.root, "state");
  }
  get rootEnv() {
    return join(this.cortexDir, ".env");
  }

  static async create(): Promise<World02> {
    const root = await Deno.makeTempDir({ prefix: "cit-unit-install02-" });
    const label = `f${crypto.randomUUID().slice(0, 8)}`;
    const p = `cit-${label}`;
    const b = await fakeBundle02({
      variant: "admin-ui",
      label,
      dir: join(root, "bundle"),
      models: [DEFAULT_MODEL],
      dbDump: "-- dump\n",
      images: [
        {
          ref: `${p}/vllm-openai:v0.28.0`,
          role: "engine",
          env: ["NVIDIA_REQUIRE_CUDA=cuda>=13.0"],
        },
        {
          ref: `${p}/vllm-openai:v0.24.0-ubuntu2404`,
          role: "engine",
          env: ["NVIDIA_REQUIRE_CUDA=cuda>=12.8"],
        },
        { ref: `${p}/cortex-gateway:0.2.0`, role: "program" },
        { ref: `${p}/postgres:16`, role: "infra" },
      ],
    });
    const w = new World02(root, b);
    await Deno.mkdir(join(w.cortexDir, "backend"), { recursive: true });
    await Deno.writeTextFile(w.composeFile, compose02(p));
    await Deno.writeTextFile(
      join(w.cortexDir, "docker.compose.dev.yaml"),
      compose02(p).replace("0.2.0", "dev"),
    );
    for (const f of [".env.example", "versions.env"]) {
      await Deno.copyFile(join(CORTEX_02, f), join(w.cortexDir, f));
    }
    await Deno.writeTextFile(
      join(root, "policy.json"),
      await policy02Text(p, { noReadiness: true }),
    );
    return w;
  }

  options(more: Partial<InstallOptions> = {}): InstallOptions {
    return installOptions({
      bundleDir: this.b.dir,
      cortexDir: this.cortexDir,
      composeFile: this.composeFile,
      project: this.prefix,
      modelsDir: this.modelsDir,
      hfCacheDir: join(this.root, "hf-cache"),
      stateDir: this.stateDir,
      manifestPath: join(this.root, "policy.json"),
      network: "offline",
      waitTimeoutSec: 30,
      admin: { passwordFromFile: ADMIN_PW },
      // The bundle's db/cortex.sql is no real dump: restores are tested in database_test.ts.
      skipDb: true,
      argv: ["install", "--yes"],
      ...more,
    });
  }

  /** A context on the scripted engine; `smi` answers nvidia-smi (else it is absent). */
  context(docker: ScriptedDocker, smi?: (args: string[]) => RunResult): Context {
    const base = hostlessDoctor(docker, this.probed);
    return createContext({
      sink: { write: (t) => void this.log.push(t), isTTY: false },
      interactive: false,
      env: { USER: "tester" },
      cwd: this.root,
      execDir: this.root,
      docker,
      now: this.clock.now,
      sleep: this.clock.sleep,
      doctorDeps: {
        ...base,
        run: (cmd, args, o) =>
          cmd === "nvidia-smi" && smi ? Promise.resolve(smi(args)) : base.run!(cmd, args, o),
      },
    });
  }

  async cleanup(): Promise<void> {
    await Deno.remove(this.root, { recursive: true });
  }
}

function test02(name: string, fn: (w: World02) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const w = await World02.create();
      try {
        await fn(w);
      } finally {
        await w.cleanup();
      }
    },
  });
}

/** The calls that change the engine (load, tag, rmi, compose up/down), in order. */
const writes = (d: ScriptedDocker) =>
  d.lines().filter((l) =>
    /^docker (load|tag|rmi)\b/.test(l) || (/ (up|down)\b/.test(l) && l.includes("compose"))
  );

/** Every file under a folder with its bytes and mtime (to show nothing was written). */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(join(dir, rel))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.lstat(join(dir, r));
      if (e.isDirectory) await walk(r);
      else out[r] = `${st.size} ${st.mtime?.getTime()} ${await Deno.readTextFile(join(dir, r))}`;
    }
  };
  await walk("");
  return out;
}

test02(
  "0.2 install through the seam: root .env only, secrets generated, admin, override " +
    "environment, compose config before the first write, model readable by uid 1000",
  async (w) => {
    const docker = new ScriptedDocker();
    const umask = Deno.umask(0o077); // a hardened host: files would be 0600, folders 0700
    let report;
    try {
      report = await runInstall(w.context(docker), w.options());
    } finally {
      Deno.umask(umask);
    }
    assertEquals([report.ok, report.outcome], [true, "installed"]);
    assertEquals(report.plan?.policy, { line: "0.2", version: "0.2.0", decidedBy: "both" });

    // compose config ran on the files as they will be, before any load.
    const lines = docker.lines();
    const config = lines.findIndex((l) => / config --quiet$/.test(l));
    const firstLoad = lines.findIndex((l) => l === "docker load");
    assert(config >= 0 && config < firstLoad, lines.join("\n"));
    assertEquals(writes(docker).filter((l) => l === "docker load").length, 4);

    // The root .env: made from .env.example, mode 0600, the keys set in place.
    const st = await Deno.stat(w.rootEnv);
    assertEquals(st.mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(w.rootEnv);
    assert(text.startsWith("# Cortex root .env"), "it starts from .env.example");
    const env = envRecord(parseEnv(text));
    assertMatch(env.INTERNAL_VLLM_API_KEY, /^[0-9a-f]{64}$/);
    assertMatch(env.SESSION_SECRET, /^[0-9a-f]{64}$/);
    assert(env.INTERNAL_VLLM_API_KEY !== env.SESSION_SECRET);
    assertEquals(
      [env.ADMIN_BOOTSTRAP_USERNAME, env.ADMIN_BOOTSTRAP_PASSWORD, env.CORS_ALLOW_ORIGINS],
      ["admin", ADMIN_PW, "http://localhost:3001"],
    );
    assertEquals([env.OFFLINE_MODE, env.OFFLINE_MODE_AUTO_DETECT], ["true", "false"]);
    assertEquals(env.CORTEX_MODELS_DIR, w.modelsDir);
    // No GPU: nothing chosen by driver; the first shipped vLLM build goes to VLLM_IMAGE.
    assertEquals(env.VLLM_IMAGE, `${w.prefix}/vllm-openai:v0.28.0`);
    // The #KEY= line of .env.example was taken over, not appended a second time.
    assertEquals(text.match(/^#?\s*CORS_ALLOW_ORIGINS=/gm)?.length, 1);
    assertEquals(await Deno.stat(join(w.cortexDir, "backend/.env")).catch(() => null), null);

    // The override: image pins and the one key no environment: entry carries.
    const override = await Deno.readTextFile(join(w.cortexDir, COMPOSE_OVERRIDE));
    assertMatch(override, /OFFLINE_MODE_AUTO_DETECT: \$\{OFFLINE_MODE_AUTO_DETECT\}/);
    assert(!/env_file/.test(override), "no env_file for 0.2");
    assert(!override.includes(env.SESSION_SECRET), "no secret in the override");

    // The model at <models dir>/<path>, readable by uid 1000 whatever the umask.
    const top = join(w.modelsDir, DEFAULT_MODEL.top);
    assertEquals((await Deno.stat(top)).mode! & 0o777, 0o755);
    assertEquals((await Deno.stat(join(top, "config.json"))).mode! & 0o777, 0o644);
    assertEquals(
      await Deno.readTextFile(join(top, "config.json")),
      DEFAULT_MODEL.files["config.json"],
    );

    // Nothing secret in the report or the state dir.
    const shown = JSON.stringify(report) + w.log.join("") +
      await Deno.readTextFile(join(w.stateDir, "journal.json")) +
      await Deno.readTextFile(join(w.stateDir, "audit.log"));
    for (const secret of [env.INTERNAL_VLLM_API_KEY, env.SESSION_SECRET, ADMIN_PW]) {
      assert(!shown.includes(secret), "a secret leaked into the report, log or state");
    }
    const j = await readJournal(w.stateDir);
    assertEquals(j.releases.at(-1)?.stack?.compose, "v2");

    // A second run, full (no journal): nothing written, nothing rotated.
    const before = await tree(w.cortexDir);
    await Deno.remove(w.stateDir, { recursive: true });
    docker.calls.length = 0;
    const again = await runInstall(w.context(docker), w.options());
    assertEquals(again.outcome, "installed");
    assertEquals(await tree(w.cortexDir), before);
    assertEquals(writes(docker).filter((l) => !l.includes("compose")), []);
    assertEquals(again.models?.models.map((m) => m.verdict), ["skipped"]);
  },
);

test02("0.2 with a recorded driver: only the vLLM build it runs is loaded and set", async (w) => {
  const info = JSON.parse(
    await Deno.readTextFile(
      new URL("../doctor/testdata/docker-info-20.10-root.json", import.meta.url),
    ),
  );
  info.Runtimes = { ...info.Runtimes, nvidia: { path: "nvidia-container-runtime" } };
  const docker = new ScriptedDocker({ info });
  const banner = await Deno.readTextFile(
    new URL("../doctor/testdata/smi-570.86.16-rtx6000ada.txt", import.meta.url),
  );
  const query = await Deno.readTextFile(
    new URL("../doctor/testdata/smi-query-570.86.15-header.csv", import.meta.url),
  );
  const smi = (args: string[]): RunResult => ({
    code: 0,
    stdout: args[0]?.startsWith("--query-gpu") ? query : banner,
    stderr: "",
  });
  const report = await runInstall(w.context(docker, smi), w.options());
  const cu128 = `${w.prefix}/vllm-openai:v0.24.0-ubuntu2404`;
  assertEquals(report.plan?.engines.map((e) => [e.chosen, e.notNeeded]), [[
    cu128,
    [`${w.prefix}/vllm-openai:v0.28.0`],
  ]]);
  const vllm = report.images!.images.filter((i) => i.file.includes("vllm"));
  assertEquals(vllm.map((i) => [i.refs[0], i.verdict]), [
    [`${w.prefix}/vllm-openai:v0.28.0`, "not-needed"],
    [cu128, "loaded"],
  ]);
  assertEquals(docker.loads, 3);
  assertEquals(docker.idOf(`${w.prefix}/vllm-openai:v0.28.0`), undefined);
  assertEquals(envRecord(parseEnv(await Deno.readTextFile(w.rootEnv))).VLLM_IMAGE, cu128);
});

test02("0.2 refusals before anything is written", async (t_w) => {
  const w = t_w;
  const snapshot = async () => ({
    cortex: await tree(w.cortexDir),
    models: await Deno.stat(w.modelsDir).then(() => true, () => false),
  });
  const before = await snapshot();
  const cases: {
    name: string;
    o: Partial<InstallOptions>;
    docker?: ScriptedDocker;
    code: number;
    msg: RegExp;
  }[] = [
    {
      name: "the dev compose file",
      o: { composeFile: join(w.cortexDir, "docker.compose.dev.yaml") },
      code: ExitCode.Preflight,
      msg: /Cannot run ".*docker\.compose\.dev\.yaml" with a Cortex 0\.2\.0 bundle: .*prod-target/,
    },
    {
      name: "only Compose v1 on the host",
      o: {},
      docker: new ScriptedDocker({ composeV1: "1.29.2" }),
      code: ExitCode.Preflight,
      msg: /Compose v1 refuses Cortex 0\.2's compose files/,
    },
    {
      name: "no admin password and nothing may ask",
      o: { admin: {} },
      code: ExitCode.Usage,
      msg: /No password for Cortex's first admin/,
    },
    {
      name: "a password prod-check refuses",
      o: { admin: { passwordFromFile: "short" } },
      code: ExitCode.Preflight,
      msg: /password has 5 characters; production \(prod-check\.sh\) needs at least 12/,
    },
    {
      name: "CORS for every site",
      o: { corsOrigin: "*" },
      code: ExitCode.Usage,
      msg: /--cors-origin "\*"/,
    },
  ];
  for (const c of cases) {
    const docker = c.docker ?? new ScriptedDocker();
    const e = await assertRejects(() => runInstall(w.context(docker), w.options(c.o)));
    const code = e instanceof InstallError || e instanceof UsageError ? e.exitCode : -1;
    assertEquals(code, c.code, `${c.name}: ${e}`);
    assertMatch((e as Error).message, c.msg);
    assertEquals(writes(docker), [], c.name);
    assertEquals(await snapshot(), before, c.name);
  }
});

test02("0.2 on a terminal: the password is asked once (twice typed), never shown", async (w) => {
  const docker = new ScriptedDocker();
  const asked: { user: string; production: boolean }[] = [];
  const report = await runInstall(
    w.context(docker),
    w.options({
      admin: { user: "root-admin" },
      askAdminPassword: (q) => {
        asked.push(q);
        return Promise.resolve("typed-at-the-prompt-42");
      },
    }),
  );
  assertEquals(asked, [{ user: "root-admin", production: true }]);
  const env = envRecord(parseEnv(await Deno.readTextFile(w.rootEnv)));
  assertEquals([env.ADMIN_BOOTSTRAP_USERNAME, env.ADMIN_BOOTSTRAP_PASSWORD], [
    "root-admin",
    "typed-at-the-prompt-42",
  ]);
  assertEquals(report.plan?.settings02?.admin.password, "(entered at the prompt)");
  assert(!JSON.stringify(report).includes("typed-at-the-prompt-42"));
});

test02(
  "0.2: an unsafe model path is refused before any write, even with --no-verify",
  async (w) => {
    await corrupt02(w.b.dir, { unsafeModelPath: "../../etc/cron.d/x" });
    const docker = new ScriptedDocker();
    const e = await assertRejects(
      () => runInstall(w.context(docker), w.options({ noVerify: true })),
      InstallError,
      `Cannot seed model "${DEFAULT_MODEL.served}"`,
    );
    assertEquals(e.exitCode, ExitCode.Integrity);
    assertMatch(e.message, /unsafe path/);
    assertEquals(writes(docker), []);
    assertEquals(await Deno.stat(w.rootEnv).catch(() => null), null);
  },
);

test02(
  "0.2: an upgrade that fails is rolled back, and no secret is rotated on the way",
  async (w) => {
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options());
    const before = envRecord(parseEnv(await Deno.readTextFile(w.rootEnv)));
    // 0.2.1: the same refs, new builds (another image ID for each).
    const next = await fakeBundle02({
      variant: "admin-ui",
      label: w.b.label,
      dir: join(w.root, "bundle-0.2.1"),
      cortexVersion: "0.2.1",
      models: [DEFAULT_MODEL],
      images: w.b.images.map((i) => ({ ref: i.ref, role: i.role, env: ["CIT_BUILD=0.2.1"] })),
    });
    // The operator checks out Cortex 0.2.1 (its versions.env says so) before the update.
    const versions = join(w.cortexDir, "versions.env");
    await Deno.writeTextFile(
      versions,
      (await Deno.readTextFile(versions)).replace("CORTEX_VERSION=0.2.0", "CORTEX_VERSION=0.2.1"),
    );
    const gw = next.images.find((i) => i.ref.includes("cortex-gateway"))!;
    docker.neverHealthy.add(gw.imageId);
    const e = await assertRejects(
      () => runInstall(w.context(docker), w.options({ bundleDir: next.dir, waitTimeoutSec: 10 })),
      InstallError,
      "rolled back to Cortex 0.2.0",
    );
    assertEquals(e.exitCode, ExitCode.Stack);
    const after = envRecord(parseEnv(await Deno.readTextFile(w.rootEnv)));
    for (const k of ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET", "ADMIN_BOOTSTRAP_PASSWORD"]) {
      assertEquals(after[k], before[k], `${k} kept`);
    }
    assertEquals(docker.idOf(gw.ref), w.b.images.find((i) => i.ref === gw.ref)!.imageId);
  },
);
