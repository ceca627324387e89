/**
 * Journeys of `install` on Cortex 0.2 bundles: the CLI as a subprocess (`deno run -A main.ts`)
 * against the real engine and Compose v2, on bundles built by the test in the exact layout Cortex
 * writes (real `docker save` tars of busybox images under a unique prefix), into checkouts made
 * from Cortex's real 0.2 files (test/testdata/cortex-v0.2.0). `plan` and `docker compose config`
 * run on the real compose file as it is; the stack runs from a derived loopback copy
 * (`docker.compose.prod.loopback-test.yaml`, see test/support/cortex02.ts) because the real file
 * publishes ports through a bridge network, which test hosts must not create.
 *
 * One Admin-UI bundle (cortex_version "dev", a model, a DB dump, two vLLM builds) is built; the
 * script bundle is assembled from the same tars (so the build is paid once). The steps run in one
 * order on purpose: those that must load nothing run while the engine has none of the images.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertNotMatch } from "../support/assert.ts";
import {
  assemble02,
  buildBundle02,
  type Built02,
  copyBundle,
  corrupt02,
  type Corruption02,
  DEFAULT_MODEL,
} from "../support/bundle02.ts";
import {
  copyCheckout02,
  LOOPBACK_COMPOSE,
  loopbackCompose02,
  loopbackRootEnv,
  policy02Text,
  type Ports02,
} from "../support/cortex02.ts";
import {
  containerEnv,
  freePort,
  listTree,
  projectHealth,
  removeProject,
  snapshot,
} from "../support/cortex.ts";
import { type CliResult, countLoadEvents, REPO_ROOT, runCli } from "../support/fixtures.ts";
import { runOnPty } from "../support/pty.ts";
import { mergeArgs } from "../support/args.ts";
import { runCommand, runDocker } from "../../src/docker.ts";
import { envRecord, parseEnv } from "../../src/host/dotenv.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const now = () => Date.now() / 1000;
// deno-lint-ignore no-explicit-any
type Json = any;

function oneJson(r: CliResult): Json {
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(
      `stdout is not one JSON document (${e}):\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
}

/** One journey's checkout, targets, ports and flags. */
interface Setup02 {
  dir: string;
  cortexDir: string;
  composeFile: string;
  modelsDir: string;
  stateDir: string;
  project: string;
  ports: Ports02;
  password: string;
  passwordFile: string;
  args: string[];
}

/**
 * A checkout made from Cortex's real 0.2 files; with `loopback`, the derived compose file and an
 * operator's root .env (Cortex's .env.example on free ports) are added and used.
 */
async function setup02(
  root: string,
  b: Built02,
  bundleDir: string,
  projects: Set<string>,
  o: { loopback?: boolean; password?: boolean } = {},
): Promise<Setup02> {
  const id = crypto.randomUUID().slice(0, 8);
  const dir = join(root, `setup-${id}`);
  const cortexDir = await copyCheckout02(join(dir, "Cortex"));
  const taken = new Set<number>();
  const ports: Ports02 = {
    gateway: freePort(taken),
    frontend: freePort(taken),
    prom: freePort(taken),
    postgres: freePort(taken),
    redis: freePort(taken),
  };
  let composeFile = join(cortexDir, "docker.compose.prod.yaml");
  if (o.loopback) {
    const real = await Deno.readTextFile(composeFile);
    composeFile = join(cortexDir, LOOPBACK_COMPOSE);
    await Deno.writeTextFile(composeFile, loopbackCompose02(real, b.prefix, ports.gateway));
    await Deno.writeTextFile(join(cortexDir, ".env"), await loopbackRootEnv(ports));
  }
  const manifest = join(dir, "policy.json");
  await Deno.writeTextFile(manifest, await policy02Text(b.prefix, { gatewayPort: ports.gateway }));
  const password = `cit-pw-${crypto.randomUUID()}`;
  const passwordFile = join(dir, "admin-password");
  await Deno.writeTextFile(passwordFile, `${password}\n`, { mode: 0o600 });
  const modelsDir = join(dir, "models");
  const stateDir = join(dir, "state");
  await Deno.mkdir(modelsDir);
  const project = `cit-${b.label}-${id}`;
  projects.add(project);
  return {
    dir,
    cortexDir,
    composeFile,
    modelsDir,
    stateDir,
    project,
    ports,
    password,
    passwordFile,
    args: [
      // The busybox stand-ins answer only the readiness paths, not Cortex's bundles API: the
      // registration of the bundle's models is a journey of its own (db_upgrade02_test.ts).
      "--skip-register",
      "--bundle",
      bundleDir,
      "--cortex-dir",
      cortexDir,
      "--compose-file",
      composeFile,
      "--project-name",
      project,
      "--models-dir",
      modelsDir,
      "--hf-cache-dir",
      join(dir, "hf-cache"),
      "--state-dir",
      stateDir,
      "--manifest",
      manifest,
      "--offline",
      // The stand-in postgres is busybox and the bundle's dump no real one (restores: db_*_test.ts).
      "--skip-db",
      ...(o.password === false ? [] : ["--admin-password-file", passwordFile]),
    ],
  };
}

/** Every file under a folder with its bytes (as text) and mtime. */
async function files(dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const p of await listTree(dir)) out[p] = await snapshot(join(dir, p));
  return out;
}

/** The images of the label the engine holds now (IDs). */
async function labelled(label: string): Promise<string[]> {
  const r = await runDocker(["images", "-q", "--no-trunc", "--filter", `label=cit=${label}`]);
  return [...new Set(r.stdout.split("\n").map((s) => s.trim()).filter(Boolean))].sort();
}

/** A stand-in `nvidia-smi` printing recorded real outputs (driver 570.86, CUDA 12.8), and a
 * `docker` that passes every call to the real CLI but adds the "nvidia" runtime to `docker info`
 * (the host's GPU stack is faked at its two probes; everything else is the real engine). */
async function fakeGpuBin(dir: string): Promise<string> {
  const bin = join(dir, "fake-gpu-bin");
  await Deno.mkdir(bin, { recursive: true });
  const td = (f: string) => join(REPO_ROOT, "src/doctor/testdata", f);
  await Deno.writeTextFile(
    join(bin, "nvidia-smi"),
    `#!/bin/sh\ncase "$1" in\n  --query-gpu=*) cat "${
      td("smi-query-570.86.15-header.csv")
    }" ;;\n  *) cat "${td("smi-570.86.16-rtx6000ada.txt")}" ;;\nesac\n`,
  );
  const real = (await runCommand("sh", ["-c", "command -v docker"])).stdout.trim();
  await Deno.writeTextFile(
    join(bin, "docker"),
    `#!/bin/sh\nif [ "$1" = info ]; then\n  out=$("${real}" "$@"); code=$?\n` +
      `  printf '%s\\n' "$out" | sed 's/"Runtimes":{/"Runtimes":{"nvidia":{"path":"nvidia-container-runtime"},/'\n` +
      `  exit $code\nfi\nexec "${real}" "$@"\n`,
  );
  await Deno.chmod(join(bin, "nvidia-smi"), 0o755);
  await Deno.chmod(join(bin, "docker"), 0o755);
  return bin;
}

/** The CLI with a umask (a hardened host: new files 0600, folders 0700 unless set). */
async function runCliUmask(umask: string, args: string[]): Promise<CliResult> {
  const r = await new Deno.Command("sh", {
    args: [
      "-c",
      `umask ${umask}; exec "$@"`,
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      "main.ts",
      ...args,
    ],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test({
  name: "Cortex 0.2 install journeys: failures, GPU choice, plan on the real files, script and " +
    "Admin-UI bundles installed and re-run, secrets kept out of every output, password prompt",
  ...opts,
  fn: async (t) => {
    const root = await Deno.makeTempDir({ prefix: "cit-install02-" });
    const label = `i${crypto.randomUUID().slice(0, 8)}`;
    const p = `cit-${label}`;
    const projects = new Set<string>();
    const vllm = `${p}/vllm-openai:v0.28.0`;
    const vllmOld = `${p}/vllm-openai:v0.24.0-ubuntu2404`;
    let ui: Built02 | undefined;
    try {
      ui = await buildBundle02({
        variant: "admin-ui",
        label,
        dir: join(root, `cortex-bundle-20260910-081502`),
        cortexVersion: "dev",
        models: [DEFAULT_MODEL],
        dbDump: "-- PostgreSQL database dump (test)\n",
        images: [
          { ref: vllm, role: "engine", env: ["NVIDIA_REQUIRE_CUDA=cuda>=13.0"] },
          { ref: vllmOld, role: "engine", env: ["NVIDIA_REQUIRE_CUDA=cuda>=12.8"] },
          { ref: `${p}/cortex-gateway:0.2.0`, role: "program" },
          { ref: `${p}/cortex-frontend:0.2.0`, role: "program" },
          { ref: `${p}/postgres:16`, role: "infra" },
          { ref: `${p}/redis:7`, role: "infra" },
          { ref: `${p}/prometheus:v2.55.1`, role: "infra" },
        ],
      });
      // The script bundle: the same tars (one vLLM build), written as the script writes them.
      const scriptDir = join(root, "cortex-offline-bundle");
      await Deno.mkdir(join(scriptDir, "images"), { recursive: true });
      const tars = ui.images.filter((i) => i.ref !== vllmOld);
      for (const i of tars) await Deno.link(join(ui.dir, i.file), join(scriptDir, i.file));
      await assemble02(scriptDir, { variant: "script" }, tars);
      const secretsSeen = new Set<string>();
      const outputs: string[] = [];
      const keep = (r: CliResult) => (outputs.push(r.stdout, r.stderr), r);

      assertEquals(await labelled(label), [], "the engine starts without the bundle's images");

      await t.step(
        "§6 failures through install: exit 4 or 3, the file named, nothing written",
        async () => {
          const cases: { corrupt: Corruption02; code: number; names: RegExp }[] = [
            {
              corrupt: { flipModelByte: DEFAULT_MODEL.served },
              code: 4,
              names: /models\/tiny-chat\/files\/Tiny-Chat-1B\/config\.json/,
            },
            {
              corrupt: { dropTar: `${p}/cortex-gateway:0.2.0` },
              code: 4,
              names: new RegExp(`images/${p}_cortex-gateway__0\\.2\\.0\\.tar.* missing`),
            },
            {
              corrupt: { kind: "not-a-cortex-bundle" },
              code: 3,
              names: /bundle\.json.*kind is "not-a-cortex-bundle"/,
            },
            {
              corrupt: { imagesJson: "disagree" },
              code: 4,
              names: /images\.json lists sha256 000000000000…, checksums\.sha256 lists/,
            },
          ];
          const t0 = now();
          await Promise.all(cases.map(async (c) => {
            const dir = await copyBundle(ui!.dir);
            try {
              await corrupt02(dir, c.corrupt);
              const s = await setup02(root, ui!, dir, projects, { loopback: true });
              const before = await files(s.cortexDir);
              const r = keep(await runCli(["install", ...s.args, "--yes", "--json"]));
              assertEquals(r.code, c.code, `${JSON.stringify(c.corrupt)}: ${r.stderr}`);
              assertMatch(r.stderr, c.names);
              assertEquals(oneJson(r).exitCode, c.code);
              assertEquals(await files(s.cortexDir), before, "the checkout is untouched");
              assertEquals(await listTree(s.modelsDir), [], "no model placed or staged");
            } finally {
              await Deno.remove(dir, { recursive: true });
            }
          }));
          assertEquals(await countLoadEvents(t0, now() + 1, label), 0, "no image loaded");
          assertEquals(await labelled(label), []);
        },
      );

      await t.step(
        "a recorded driver (570.86, CUDA 12.8): only the vLLM build it runs is loaded and set",
        async () => {
          const s = await setup02(root, ui!, ui!.dir, projects, { loopback: true });
          const bin = await fakeGpuBin(s.dir);
          const r = keep(
            await runCli(
              ["install", ...s.args, "--yes", "--json", "--skip-start", "--skip-models"],
              {
                env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
              },
            ),
          );
          assertEquals(r.code, 0, r.stderr);
          const j = oneJson(r);
          assertEquals([j.plan.gpu.state, j.plan.gpu.driverVersion, j.plan.gpu.cudaVersion], [
            "ok",
            "570.86.15",
            "12.8",
          ]);
          assertEquals(j.plan.engines.map((e: Json) => [e.chosen, e.notNeeded]), [[vllmOld, [
            vllm,
          ]]]);
          const byRef = Object.fromEntries(
            j.images.images.map((i: Json) => [i.refs[0], i.verdict]),
          );
          assertEquals([byRef[vllm], byRef[vllmOld]], ["not-needed", "loaded"]);
          assertMatch(r.stderr, /not needed on this host/);
          const ids = await labelled(label);
          const idOf = (ref: string) => ui!.images.find((i) => i.ref === ref)!.imageId;
          assert(ids.includes(idOf(vllmOld)), "the fitting build is loaded");
          assert(!ids.includes(idOf(vllm)), "the other build is not");
          const env = envRecord(parseEnv(await Deno.readTextFile(join(s.cortexDir, ".env"))));
          assertEquals(env.VLLM_IMAGE, vllmOld);
          for (const k of ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"]) secretsSeen.add(env[k]);
          secretsSeen.add(s.password);
        },
      );

      await t.step(
        "plan on Cortex's real files (compose config included): nothing written",
        async () => {
          const s = await setup02(root, ui!, scriptDir, projects);
          const before = await files(s.cortexDir);
          const [plan, dev, v1] = await Promise.all([
            runCli(["plan", ...s.args, "--skip-start", "--json"]),
            runCli([
              "plan",
              ...mergeArgs(s.args, [
                "--compose-file",
                join(s.cortexDir, "docker.compose.dev.yaml"),
              ]),
            ]),
            runCli(["plan", ...mergeArgs(s.args, ["--compose", "v1"])]),
          ]).then((rs) => rs.map(keep));
          assertEquals(plan.code, 0, plan.stderr);
          const j = oneJson(plan);
          assertEquals(j.plan.policy, { line: "0.2", version: "0.2.0", decidedBy: "both" });
          assertEquals(j.plan.bundle.format, "bundle-script");
          assertEquals(j.plan.compose.major, 2);
          const s02 = j.plan.settings02;
          assertEquals(s02.rootEnv.created, true);
          assertEquals(s02.secrets.map((x: Json) => [x.key, x.shown]), [
            ["INTERNAL_VLLM_API_KEY", "(generated)"],
            ["SESSION_SECRET", "(generated)"],
          ]);
          assertEquals(s02.admin.password, "(from --admin-password-file)");
          assertEquals(s02.cors, { value: "http://localhost:3001", source: "default" });
          assertEquals(s02.missingRequired, []);
          assertEquals(j.plan.wheels.action, "copy");
          assertEquals(j.plan.readiness.length, 3);
          // Cortex's images are not in the bundle (it ships them under the test prefix): with
          // --skip-start that is said, not an error.
          assert(j.plan.missingImages.some((m: Json) => m.ref === "cortex-gateway:0.2.0"));
          assertEquals(await files(s.cortexDir), before, "plan writes nothing");
          assertEquals(dev.code, 3, dev.stderr);
          assertMatch(
            dev.stderr,
            /docker\.compose\.dev\.yaml" with a Cortex 0\.2\.0 bundle: .*prod-target/,
          );
          assertEquals(v1.code, 3, v1.stderr);
          assertMatch(v1.stderr, /Compose v1 refuses Cortex 0\.2's compose files/);
          assertMatch(v1.stderr, /hint: Install Compose v2/);
        },
      );

      let script: Setup02 | undefined;
      await t.step(
        "script bundle installed unattended: healthy, settings seen by the containers",
        async () => {
          const s = script = await setup02(root, ui!, scriptDir, projects, { loopback: true });
          const r = keep(await runCli(["install", ...s.args, "--yes", "--json"]));
          assertEquals(r.code, 0, r.stderr);
          const j = oneJson(r);
          assertEquals([j.ok, j.outcome], [true, "installed"]);
          assertEquals(await projectHealth(s.project), {
            frontend: "healthy",
            gateway: "healthy",
            postgres: "healthy",
            prometheus: "healthy",
            redis: "healthy",
          });
          assertEquals(
            j.urls.sort(),
            [
              `http://127.0.0.1:${s.ports.frontend}/login`,
              `http://127.0.0.1:${s.ports.gateway}/health`,
              `http://127.0.0.1:${s.ports.prom}/-/ready`,
            ].sort(),
          );
          const rootEnv = join(s.cortexDir, ".env");
          assertEquals((await Deno.stat(rootEnv)).mode! & 0o777, 0o600);
          const env = envRecord(parseEnv(await Deno.readTextFile(rootEnv)));
          assertMatch(env.INTERNAL_VLLM_API_KEY, /^[0-9a-f]{64}$/);
          assertMatch(env.SESSION_SECRET, /^[0-9a-f]{64}$/);
          assertEquals(env.FRONTEND_PORT, String(s.ports.frontend), "the operator's lines kept");
          assertEquals(await Deno.stat(join(s.cortexDir, "backend/.env")).catch(() => null), null);
          const gw = Object.fromEntries(
            (await containerEnv(s.project, "gateway")).map((
              l,
            ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
          );
          assertEquals(
            [
              gw.OFFLINE_MODE,
              gw.OFFLINE_MODE_AUTO_DETECT,
              gw.REQUIRE_IMAGE_PRECACHE,
              gw.VLLM_IMAGE,
            ],
            ["true", "false", "true", vllm],
          );
          assertEquals(
            [gw.INTERNAL_VLLM_API_KEY, gw.SESSION_SECRET, gw.ADMIN_BOOTSTRAP_PASSWORD],
            [env.INTERNAL_VLLM_API_KEY, env.SESSION_SECRET, s.password],
          );
          assertEquals(gw.CORS_ALLOW_ORIGINS, `http://localhost:${s.ports.frontend}`);
          assertEquals(gw.CORTEX_MODELS_DIR_HOST, s.modelsDir);
          assertEquals(
            (await listTree(join(s.cortexDir, "backend/wheels"))).sort(),
            ["./fastapi-0.115.0-py3-none-any.whl", "./requirements.txt"],
          );
          for (const k of ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"]) secretsSeen.add(env[k]);
          secretsSeen.add(s.password);
        },
      );

      await t.step("a second run changes nothing and rotates nothing", async () => {
        const s = script!;
        const watched = [
          ".env",
          "docker.compose.cortex-install.yaml",
          "backend/wheels/requirements.txt",
        ];
        const before = await Promise.all(watched.map((f) => snapshot(join(s.cortexDir, f))));
        const t0 = now();
        const r = keep(await runCli(["install", ...s.args, "--yes", "--json"]));
        assertEquals(r.code, 0, r.stderr);
        assertEquals(oneJson(r).outcome, "unchanged");
        assertEquals(await Promise.all(watched.map((f) => snapshot(join(s.cortexDir, f)))), before);
        assertEquals(await countLoadEvents(t0, now() + 1, label), 0);
        // Without the journal (a full install): the same files, the same secrets.
        await Deno.remove(s.stateDir, { recursive: true });
        const full = keep(await runCli(["install", ...s.args, "--yes", "--json"]));
        assertEquals(full.code, 0, full.stderr);
        assertEquals(oneJson(full).outcome, "installed");
        assertEquals(await Promise.all(watched.map((f) => snapshot(join(s.cortexDir, f)))), before);
      });

      await t.step(
        "Admin-UI bundle under umask 077: model placed, readable by uid 1000",
        async () => {
          const s = await setup02(root, ui!, ui!.dir, projects, { loopback: true });
          const r = keep(await runCliUmask("077", ["install", ...s.args, "--yes", "--json"]));
          assertEquals(r.code, 0, r.stderr);
          const j = oneJson(r);
          assertEquals(j.plan.policy, { line: "0.2", version: "0.2.0", decidedBy: "checkout" });
          assertMatch(j.plan.bundle.warnings.join("\n"), /cortex_version "dev"/);
          assert(j.files.some((f: Json) => f.path === "db/cortex.sql" && f.verdict === "ok"));
          assertEquals(await listTree(s.modelsDir), [
            "./Tiny-Chat-1B",
            "./Tiny-Chat-1B/config.json",
            "./Tiny-Chat-1B/model.safetensors",
          ]);
          assertEquals(
            Object.values(await projectHealth(s.project)).every((h) => h === "healthy"),
            true,
          );
          // The gateway's user reads the model as the bundle had it.
          const read = await runDocker([
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "1000:1000",
            "-v",
            `${s.modelsDir}:/m:ro`,
            `${p}/cortex-gateway:0.2.0`,
            "cat",
            "/m/Tiny-Chat-1B/config.json",
          ]);
          assertEquals(
            [read.code, read.stdout],
            [0, DEFAULT_MODEL.files["config.json"]],
            read.stderr,
          );
          const env = envRecord(parseEnv(await Deno.readTextFile(join(s.cortexDir, ".env"))));
          for (const k of ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"]) secretsSeen.add(env[k]);
          secretsSeen.add(s.password);
          // status reads the journal and the containers.
          const st = keep(await runCli(["status", "--state-dir", s.stateDir, "--json"]));
          assertEquals(st.code, 0, st.stderr);
          const sj = oneJson(st);
          assertEquals([sj.installed.release, sj.healthy], ["0.2.0", true]);
          await removeProject(s.project);
        },
      );

      await t.step("on a terminal the password is asked twice, hidden, never echoed", async () => {
        const s = await setup02(root, ui!, scriptDir, projects, {
          loopback: true,
          password: false,
        });
        const pw = `typed-${crypto.randomUUID()}`;
        const r = await runOnPty([...s.args, "--skip-start"], [
          ["Password for Cortex's first admin", [pw, "\r"]],
          ["The same password again", [pw, "\r"]],
          ["Go on with the install?", ["y", "\r"]],
        ]);
        outputs.push(r.output);
        assertEquals(r.code, 0, r.output);
        assertNotMatch(r.output, new RegExp(pw), "the password was echoed");
        assertMatch(r.output, /password \(entered at the prompt\)/);
        const env = envRecord(parseEnv(await Deno.readTextFile(join(s.cortexDir, ".env"))));
        assertEquals(env.ADMIN_BOOTSTRAP_PASSWORD, pw);
        secretsSeen.add(pw);
        for (const k of ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"]) secretsSeen.add(env[k]);
        // Without a terminal and without a password: exit 2 naming the flags.
        const s2 = await setup02(root, ui!, scriptDir, projects, {
          loopback: true,
          password: false,
        });
        const r2 = keep(await runCli(["install", ...s2.args, "--yes"]));
        assertEquals(r2.code, 2, r2.stderr);
        assertMatch(r2.stderr, /--admin-password-file FILE .* ADMIN_BOOTSTRAP_PASSWORD/);
      });

      await t.step("no secret in any output, report, journal or audit line", async () => {
        assert(secretsSeen.size >= 6, `${secretsSeen.size} secrets planted`);
        const state: string[] = [];
        for await (const e of Deno.readDir(root)) {
          if (!e.name.startsWith("setup-")) continue;
          for (const f of ["state/journal.json", "state/audit.log"]) {
            state.push(await Deno.readTextFile(join(root, e.name, f)).catch(() => ""));
          }
        }
        const all = [...outputs, ...state].join("\n");
        for (const secret of secretsSeen) {
          assert(!all.includes(secret), "a secret leaked into an output, report or the state dir");
        }
      });
    } finally {
      for (const project of projects) await removeProject(project);
      await ui?.cleanup();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
