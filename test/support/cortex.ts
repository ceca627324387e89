/**
 * A Cortex-like install fixture for the `install` journeys: one demo bundle per test file (built
 * with `buildDemo` under a unique image namespace), and per journey a fresh "setup": its own
 * Cortex dir (demo compose with that namespace, a root `.env` holding unique free loopback ports
 * and planted fake secrets), release manifest (readiness on that gateway port), project name,
 * models/hf-cache/state dirs. So journeys can run while other test files run theirs.
 */
import { join } from "node:path";
import { createContext } from "../../src/context.ts";
import { buildDemo, DEMO_IMAGES, demoRef } from "../../src/demo.ts";
import { runCommand, runDocker } from "../../src/docker.ts";
import { loadEvents } from "./fixtures.ts";

const REPO_ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** The bundle shared by the journeys of one file. */
export interface CortexBundle {
  /** Temp dir holding everything of this file; removed by `cleanup`. */
  root: string;
  /** Unique image namespace, e.g. `cit-cx-1a2b3c4d`. */
  ns: string;
  bundleDir: string;
  /** Every ref the bundle ships. */
  refs: string[];
  /** Removes every image of the namespace, the containers of every setup, and `root`. */
  cleanup(): Promise<void>;
  /** Projects started by setups, for cleanup. */
  projects: Set<string>;
}

/** One journey's Cortex dir, targets and flags. */
export interface CortexSetup {
  dir: string;
  cortexDir: string;
  composeFile: string;
  manifestPath: string;
  modelsDir: string;
  hfCacheDir: string;
  stateDir: string;
  project: string;
  ports: { gateway: number; postgres: number; redis: number; prom: number };
  /** Fake secret values planted in backend/.env and the root .env. */
  secrets: string[];
  /** `install` flags for this setup (bundle, dirs, project, manifest, --offline). */
  args: string[];
}

const silentCtx = () => createContext({ sink: { write: () => {}, isTTY: false } });

/** Builds the demo bundle once, under a unique namespace; the engine keeps none of its images. */
export async function buildCortexBundle(): Promise<CortexBundle> {
  const root = await Deno.makeTempDir({ prefix: "cit-cortex-" });
  const ns = `cit-cx-${crypto.randomUUID().slice(0, 8)}`;
  const projects = new Set<string>();
  const demo = await buildDemo(silentCtx(), join(root, "build"), { namespace: ns });
  return {
    root,
    ns,
    bundleDir: demo.bundleDir,
    refs: DEMO_IMAGES.map((i) => demoRef(i, ns)),
    projects,
    cleanup: async () => {
      for (const p of projects) await removeProject(p);
      await removeNamespaceImages(ns);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

/** Removes a compose project's containers (and its default network, if compose made one). */
export async function removeProject(project: string): Promise<void> {
  const ps = await runDocker([
    "ps",
    "-aq",
    "--filter",
    `label=com.docker.compose.project=${project}`,
  ]);
  const ids = ps.stdout.split("\n").map((s) => s.trim()).filter(Boolean);
  if (ids.length) await runDocker(["rm", "-f", ...ids]);
  await runDocker(["network", "rm", `${project}_default`]);
}

/** Every image ref (`repo:tag`) of the namespace in the engine, sorted. */
export async function namespaceImages(ns: string): Promise<string[]> {
  const r = await runDocker(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
  return r.stdout.split("\n").map((s) => s.trim()).filter((s) => s.startsWith(`${ns}/`)).sort();
}

/** Removes every image of the namespace (all tags). */
export async function removeNamespaceImages(ns: string): Promise<void> {
  const refs = await namespaceImages(ns);
  if (refs.length) await runDocker(["rmi", "-f", ...refs]);
}

/**
 * How many `docker load` events the engine recorded between two instants for images of this
 * namespace (demo images carry `org.opencontainers.image.title=<ref>`).
 */
export async function countNamespaceLoads(
  ns: string,
  sinceSec: number,
  untilSec: number,
): Promise<number> {
  const events = await loadEvents(sinceSec, untilSec);
  return events.filter((a) => JSON.stringify(a).includes(`"${ns}/`)).length;
}

/** A free loopback TCP port (bound then released), not in `taken`. */
export function freePort(taken: Set<number> = new Set()): number {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    if (taken.has(port)) continue;
    try {
      const l = Deno.listen({ hostname: "127.0.0.1", port });
      l.close();
      taken.add(port);
      return port;
    } catch {
      // taken: try another
    }
  }
  throw new Error("no free loopback port found");
}

export interface SetupOptions {
  /** Rewrites the compose text (after the namespace substitution). */
  compose?: (text: string) => string;
  /** Replaces backend/.env (bytes as given). */
  backendEnv?: string;
  /** Extra lines for the root .env. */
  rootEnvExtra?: string;
}

/** Makes a fresh setup (Cortex dir, targets, manifest, unique project and ports) under `b.root`. */
export async function makeSetup(b: CortexBundle, o: SetupOptions = {}): Promise<CortexSetup> {
  const id = crypto.randomUUID().slice(0, 8);
  const dir = join(b.root, `setup-${id}`);
  const cortexDir = join(dir, "Cortex");
  await Deno.mkdir(join(cortexDir, "backend"), { recursive: true });
  const assets = join(REPO_ROOT, "assets/demo");
  const compose = (await Deno.readTextFile(join(assets, "docker.compose.prod.yaml")))
    .replaceAll("cortex-demo/", `${b.ns}/`);
  const composeFile = join(cortexDir, "docker.compose.prod.yaml");
  await Deno.writeTextFile(composeFile, o.compose ? o.compose(compose) : compose);
  const secrets = [`cit-secret-vllm-${id}`, `cit-secret-admin-${id}`, `cit-secret-pg-${id}`];
  const backend = o.backendEnv ??
    (await Deno.readTextFile(join(assets, "backend/.env")))
      .replace("INTERNAL_VLLM_API_KEY=demo-internal-token", `INTERNAL_VLLM_API_KEY=${secrets[0]}`)
      .replace("ADMIN_BOOTSTRAP_PASSWORD=demo-admin", `ADMIN_BOOTSTRAP_PASSWORD=${secrets[1]}`);
  await Deno.writeTextFile(join(cortexDir, "backend/.env"), backend);
  await Deno.copyFile(join(assets, "backend/.env.prod"), join(cortexDir, "backend/.env.prod"));
  const taken = new Set<number>();
  const ports = {
    gateway: freePort(taken),
    postgres: freePort(taken),
    redis: freePort(taken),
    prom: freePort(taken),
  };
  await Deno.writeTextFile(
    join(cortexDir, ".env"),
    `# test ports\nCORTEX_GATEWAY_PORT=${ports.gateway}\nCORTEX_POSTGRES_PORT=${ports.postgres}\n` +
      `CORTEX_REDIS_PORT=${ports.redis}\nPROM_PORT=${ports.prom}\nPOSTGRES_PASSWORD=${
        secrets[2]
      }\n` +
      (o.rootEnvExtra ?? ""),
  );
  const release = JSON.parse(await Deno.readTextFile(join(assets, "release.json")));
  for (const img of release.images) {
    img.repository = String(img.repository).replace(/^cortex-demo\//, `${b.ns}/`);
  }
  for (const r of release.readiness) {
    r.url = String(r.url).replace(":18084/", `:${ports.gateway}/`);
  }
  const manifestPath = join(dir, "release.json");
  await Deno.writeTextFile(manifestPath, JSON.stringify(release, null, 2));
  const modelsDir = join(dir, "models");
  const hfCacheDir = join(dir, "hf-cache");
  const stateDir = join(dir, "state");
  await Deno.mkdir(modelsDir);
  await Deno.mkdir(hfCacheDir);
  const project = `cit-${b.ns.slice(-8)}-${id}`;
  b.projects.add(project);
  return {
    dir,
    cortexDir,
    composeFile,
    manifestPath,
    modelsDir,
    hfCacheDir,
    stateDir,
    project,
    ports,
    secrets,
    args: [
      "--bundle",
      b.bundleDir,
      "--cortex-dir",
      cortexDir,
      "--compose-file",
      composeFile,
      "--project-name",
      project,
      "--models-dir",
      modelsDir,
      "--hf-cache-dir",
      hfCacheDir,
      "--state-dir",
      stateDir,
      "--manifest",
      manifestPath,
      "--offline",
      // Cortex 0.1 runs on Compose v1 in the field too: its journeys use it.
      "--compose",
      "v1",
    ],
  };
}

/** Bytes and mtime of a file (undefined when missing). */
export async function snapshot(
  path: string,
): Promise<{ bytes: string; mtime: number } | undefined> {
  try {
    const st = await Deno.stat(path);
    const bytes = await Deno.readFile(path);
    return { bytes: new TextDecoder().decode(bytes), mtime: st.mtime?.getTime() ?? 0 };
  } catch {
    return undefined;
  }
}

/** Every path (relative, sorted) under `dir`, recursively; [] when `dir` is missing. */
export async function listTree(dir: string): Promise<string[]> {
  const r = await runCommand("sh", [
    "-c",
    'cd "$1" 2>/dev/null && find . -mindepth 1 | sort',
    "sh",
    dir,
  ]);
  return r.stdout.split("\n").filter(Boolean);
}

/** The environment of a compose service's container (`KEY=value` lines), by project. */
export async function containerEnv(project: string, service: string): Promise<string[]> {
  const ps = await runDocker([
    "ps",
    "-q",
    "--filter",
    `label=com.docker.compose.project=${project}`,
    "--filter",
    `label=com.docker.compose.service=${service}`,
  ]);
  const id = ps.stdout.trim().split("\n")[0];
  if (!id) return [];
  const r = await runDocker(["inspect", "--format", "{{json .Config.Env}}", id]);
  return JSON.parse(r.stdout) as string[];
}

/** Health (or state) of each service container of a project: service -> health|state. */
export async function projectHealth(project: string): Promise<Record<string, string>> {
  const ps = await runDocker([
    "ps",
    "-aq",
    "--filter",
    `label=com.docker.compose.project=${project}`,
  ]);
  const out: Record<string, string> = {};
  for (const id of ps.stdout.split("\n").map((s) => s.trim()).filter(Boolean)) {
    const r = await runDocker([
      "inspect",
      "--format",
      '{{index .Config.Labels "com.docker.compose.service"}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}',
      id,
    ]);
    const [svc, h] = r.stdout.trim().split(" ");
    out[svc] = h;
  }
  return out;
}
