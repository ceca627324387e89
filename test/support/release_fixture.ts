/**
 * A small Cortex-like world for re-run and upgrade journeys: a Cortex dir (compose file on unique
 * loopback ports, backend/.env with a secret, backend/.env.prod), a release manifest, and script
 * bundles of several releases built from busybox under the unique prefix `cit-<label>/`.
 *
 * Every bundle of a test is built up front (`buildRelease`), then every image is removed from the
 * engine, so that installs really load them. The stack runs as compose project `cit-<label>`;
 * `cleanup()` removes its containers, the images labelled `cit=<label>` and the folder.
 */
import { mergeArgs } from "./args.ts";
import { fileSha256, randomLabel, REPO_ROOT, writeChecksums } from "./fixtures.ts";
import { runCommand, runDocker } from "../../src/docker.ts";

export { REPO_ROOT };

/** A secret value in backend/.env that must never appear in any output. */
export const SECRET = "cit-SeCrEt-" + crypto.randomUUID().slice(0, 8);

export interface World {
  label: string;
  prefix: string;
  project: string;
  root: string;
  cortexDir: string;
  composeFile: string;
  override: string;
  modelsDir: string;
  hfCacheDir: string;
  stateDir: string;
  manifestPath: string;
  ports: { postgres: number; gateway: number };
  /** Install arguments for a bundle dir (without --json). */
  installArgs(bundleDir: string, extra?: string[]): string[];
  cleanup(): Promise<void>;
}

export interface ImageSpec {
  /** Repository under the prefix, e.g. `vllm-openai`. */
  repo: string;
  tag: string;
  /** Changes the image content (so the image ID) while ref stays the same. */
  marker: string;
  /** The gateway stand-in never becomes healthy. */
  broken?: boolean;
  /** Random bytes in a base layer of this image (shared with images of the same base). */
  payload?: number;
  /** Name of a base (layer) to share with other images: images of the same base share it. */
  base?: string;
  /** Engine section of the script manifest (vllm). */
  engine?: boolean;
}

export interface ReleaseSpec {
  version: string;
  images: ImageSpec[];
  /** Model files under models/, by path. */
  models?: Record<string, string | Uint8Array>;
}

export interface BuiltRelease {
  dir: string;
  version: string;
  /** ref -> image ID */
  ids: Record<string, string>;
  /** ref -> bundle file */
  files: Record<string, string>;
}

async function must(p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/** A free loopback TCP port (the OS picks it). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const svc = (port: number, body: string) =>
  `trap 'exit 0' TERM; mkdir -p /www && echo '${body}' > /www/health && ` +
  `httpd -f -p 127.0.0.1:${port} -h /www & wait`;

function composeText(prefix: string, ports: World["ports"]): string {
  const hc = (port: number) =>
    `    healthcheck:\n      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:${port}/health"]\n` +
    `      interval: 3s\n      timeout: 3s\n      retries: 20\n`;
  return `# cortex-install test stack (busybox stand-ins on loopback ports)
services:
  postgres:
    image: ${prefix}/postgres:16
    network_mode: host
    command: ["sh", "-c", ${JSON.stringify(svc(ports.postgres, "ok"))}]
${hc(ports.postgres)}
  gateway:
    image: ${prefix}/cortex-gateway:latest
    network_mode: host
    env_file:
      - ./backend/.env.prod
    environment:
      VLLM_IMAGE: \${VLLM_IMAGE:-unset}
      CORTEX_MODELS_DIR: \${CORTEX_MODELS_DIR:-/var/cortex/models}
    command: ["sh", "-c", ${
    JSON.stringify(
      `if [ -e /broken ]; then trap 'exit 0' TERM; sleep 100000 & wait; fi; ` +
        svc(ports.gateway, '{"status":"ok"}'),
    )
  }]
${hc(ports.gateway)}    depends_on: [postgres]
`;
}

function releaseManifest(prefix: string, ports: World["ports"]): unknown {
  return {
    schema: 1,
    release: "0.0.0-test",
    images: [
      { role: "vllm", repository: `${prefix}/vllm-openai`, critical: true, envKey: "VLLM_IMAGE" },
      { role: "postgres", repository: `${prefix}/postgres`, critical: true },
      { role: "gateway", repository: `${prefix}/cortex-gateway`, critical: true },
    ],
    env: {
      offline: {
        OFFLINE_MODE: "True",
        OFFLINE_MODE_AUTO_DETECT: "False",
        REQUIRE_IMAGE_PRECACHE: "True",
      },
      online: {
        OFFLINE_MODE: "False",
        OFFLINE_MODE_AUTO_DETECT: "True",
        REQUIRE_IMAGE_PRECACHE: "False",
      },
      paths: {
        CORTEX_MODELS_DIR: "{modelsDir}",
        CORTEX_MODELS_DIR_HOST: "{modelsDir}",
        HF_CACHE_DIR: "{hfCacheDir}",
      },
    },
    readiness: [{
      service: "gateway",
      url: `http://127.0.0.1:${ports.gateway}/health`,
      expectJson: { status: "ok" },
    }],
    pins: {},
  };
}

/** Makes the world (no images yet). */
export async function newWorld(): Promise<World> {
  const label = randomLabel("r");
  const prefix = `cit-${label}`;
  const root = await Deno.makeTempDir({ prefix: `cit-world-${label}-` });
  const ports = { postgres: freePort(), gateway: freePort() };
  const cortexDir = `${root}/Cortex`;
  await Deno.mkdir(`${cortexDir}/backend`, { recursive: true });
  const composeFile = `${cortexDir}/docker.compose.prod.yaml`;
  await Deno.writeTextFile(composeFile, composeText(prefix, ports));
  await Deno.writeTextFile(
    `${cortexDir}/backend/.env`,
    `# test backend/.env\nVLLM_GEN_URLS=http://vllm-gen:8000\nADMIN_BOOTSTRAP_PASSWORD=${SECRET}\n` +
      `RATE_LIMIT_RPS=10\n`,
  );
  await Deno.writeTextFile(
    `${cortexDir}/backend/.env.prod`,
    `# test backend/.env.prod\nGATEWAY_DEV_ALLOW_ALL_KEYS=false\n`,
  );
  const manifestPath = `${root}/release.json`;
  await Deno.writeTextFile(manifestPath, JSON.stringify(releaseManifest(prefix, ports), null, 2));
  const w: World = {
    label,
    prefix,
    project: `cit-${label}`,
    root,
    cortexDir,
    composeFile,
    override: `${cortexDir}/docker.compose.cortex-install.yaml`,
    modelsDir: `${root}/models`,
    hfCacheDir: `${root}/hf-cache`,
    stateDir: `${root}/state`,
    manifestPath,
    ports,
    installArgs: (bundleDir, extra = []) =>
      mergeArgs([
        "install",
        "--bundle",
        bundleDir,
        "--cortex-dir",
        cortexDir,
        "--compose-file",
        composeFile,
        "--project-name",
        `cit-${label}`,
        "--models-dir",
        `${root}/models`,
        "--hf-cache-dir",
        `${root}/hf-cache`,
        "--state-dir",
        `${root}/state`,
        "--manifest",
        manifestPath,
        "--offline",
        // Cortex 0.1 runs on Compose v1 in the field too: its journeys use it.
        "--compose",
        "v1",
        "--yes",
        // Generous: a wait ends as soon as the stack is healthy; a busy CI host may take minutes.
        "--wait-timeout",
        "300",
        // The stack's "postgres" is a busybox stand-in: there is no database to back up.
        "--skip-db",
      ], extra),
    cleanup: async () => {
      await removeProject(`cit-${label}`);
      await removeLabelled(label);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
  for (const d of [w.modelsDir, w.hfCacheDir, w.stateDir]) await Deno.mkdir(d, { recursive: true });
  return w;
}

/** Removes the images labelled cit=<label> (only refs starting with `refPrefix` if given). */
async function removeLabelled(label: string, refPrefix?: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const r = await runDocker([
      "images",
      "--no-trunc",
      "--filter",
      `label=cit=${label}`,
      "--format",
      "{{.Repository}}:{{.Tag}}\t{{.ID}}",
    ]);
    const rows = r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t"));
    const pick = rows.filter(([ref]) => !refPrefix || ref.startsWith(refPrefix));
    if (pick.length === 0) return;
    // Newest first: children before their parents.
    for (const [ref, id] of pick) await runDocker(["rmi", "-f", refPrefix ? ref : id]);
  }
}

/** Removes every container of a compose project. */
export async function removeProject(project: string): Promise<void> {
  const r = await runDocker([
    "ps",
    "-aq",
    "--filter",
    `label=com.docker.compose.project=${project}`,
  ]);
  const ids = r.stdout.split("\n").map((s) => s.trim()).filter(Boolean);
  if (ids.length > 0) await runDocker(["rm", "-f", ...ids]);
}

/** Container ID and image ID of a compose service's container. */
export async function serviceContainer(
  project: string,
  service: string,
): Promise<{ id: string; image: string; health?: string } | undefined> {
  const r = await runDocker([
    "ps",
    "-q",
    "--no-trunc",
    "--filter",
    `label=com.docker.compose.project=${project}`,
    "--filter",
    `label=com.docker.compose.service=${service}`,
  ]);
  const id = r.stdout.split("\n")[0]?.trim();
  if (!id) return undefined;
  const i = await runDocker([
    "inspect",
    "--format",
    "{{.Image}}\t{{if .State.Health}}{{.State.Health.Status}}{{end}}",
    id,
  ]);
  const [image, health] = i.stdout.trim().split("\t");
  return { id, image, health: health || undefined };
}

/** The environment a container was started with, as a map. */
export async function containerEnv(id: string): Promise<Record<string, string>> {
  const r = await runDocker(["inspect", "--format", "{{json .Config.Env}}", id]);
  const out: Record<string, string> = {};
  for (const kv of JSON.parse(r.stdout) as string[]) {
    const i = kv.indexOf("=");
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/**
 * Builds the bundles of several releases (script format), in order, then removes every image
 * from the engine. Images with the same repo, tag, marker and broken flag are built once and
 * shipped as the same tar (same image ID); images with the same `base` share their first layer.
 */
export async function buildReleases(w: World, specs: ReleaseSpec[]): Promise<BuiltRelease[]> {
  const tars = new Map<string, { tar: string; id: string }>();
  const bases = new Map<string, string>();
  const made: string[] = [];
  const out: BuiltRelease[] = [];
  const work = await Deno.makeTempDir({ prefix: "cit-rel-", dir: w.root });
  try {
    for (const spec of specs) {
      const dir = `${w.root}/bundle-${spec.version}`;
      await Deno.mkdir(dir, { recursive: true });
      const digests: Record<string, string> = {};
      const rel: BuiltRelease = { dir, version: spec.version, ids: {}, files: {} };
      const engines = [];
      const infrastructure = [];
      for (const img of spec.images) {
        const ref = `${w.prefix}/${img.repo}:${img.tag}`;
        const file = `${img.repo}-${img.tag}.tar`;
        const key = `${ref}|${img.marker}|${!!img.broken}`;
        let built = tars.get(key);
        if (!built) {
          const id = await makeLayeredImage(w, ref, img, bases, work, made);
          const tar = `${work}/${crypto.randomUUID()}.tar`;
          await must(runDocker(["save", "-o", tar, ref]), `docker save ${ref}`);
          built = { tar, id };
          tars.set(key, built);
        }
        await Deno.copyFile(built.tar, `${dir}/${file}`);
        digests[file] = await fileSha256(`${dir}/${file}`);
        rel.ids[ref] = built.id;
        rel.files[ref] = file;
        if (img.engine) {
          engines.push({
            name: `${w.prefix}/${img.repo}`,
            version: img.tag,
            file,
            purpose: "engine",
          });
        } else infrastructure.push({ name: ref, file, purpose: img.repo });
      }
      for (const [p, content] of Object.entries(spec.models ?? {})) {
        const abs = `${dir}/models/${p}`;
        await Deno.mkdir(abs.slice(0, abs.lastIndexOf("/")), { recursive: true });
        if (typeof content === "string") await Deno.writeTextFile(abs, content);
        else await Deno.writeFile(abs, content);
        digests[`models/${p}`] = await fileSha256(abs);
      }
      await Deno.writeTextFile(
        `${dir}/manifest.json`,
        JSON.stringify({
          created: "2026-01-18T12:00:00Z",
          cortex_version: spec.version,
          prepared_by: "cit@test",
          images: { engines, infrastructure },
        }),
      );
      await writeChecksums(dir, digests);
      out.push(rel);
    }
  } finally {
    // Children before their base.
    for (const id of [...new Set(made)].reverse()) await runDocker(["rmi", "-f", id]);
    await removeLabelled(w.label, `${w.prefix}/base-`);
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return out;
}

/** One image: a base layer (busybox, optional payload; shared per `base`) plus a marker layer. */
async function makeLayeredImage(
  w: World,
  ref: string,
  img: ImageSpec,
  bases: Map<string, string>,
  work: string,
  made: string[],
): Promise<string> {
  const baseKey = img.base ?? `own-${crypto.randomUUID()}`;
  let base = bases.get(baseKey);
  if (!base) {
    const root = `${work}/rootfs-${crypto.randomUUID()}`;
    await Deno.mkdir(`${root}/bin`, { recursive: true });
    await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
    await Deno.chmod(`${root}/bin/busybox`, 0o755);
    for (const l of ["sh", "httpd", "wget", "mkdir", "echo", "sleep", "cat", "env", "true"]) {
      await Deno.symlink("busybox", `${root}/bin/${l}`);
    }
    await Deno.writeTextFile(`${root}/cit-base`, `${baseKey} ${crypto.randomUUID()}\n`);
    if (img.payload) {
      await must(
        runCommand("sh", ["-c", `head -c ${img.payload} /dev/urandom > "$1"`, "sh", `${root}/p`]),
        "payload",
      );
    }
    const baseRef = `${w.prefix}/base-${crypto.randomUUID().slice(0, 8)}:1`;
    await must(
      runCommand("sh", [
        "-c",
        'tar -C "$1" -c . | docker import --change "LABEL cit=$2" - "$3"',
        "sh",
        root,
        w.label,
        baseRef,
      ]),
      "docker import",
    );
    await Deno.remove(root, { recursive: true });
    base = await must(runDocker(["image", "inspect", "--format", "{{.Id}}", baseRef]), "inspect");
    bases.set(baseKey, base);
    made.push(base);
  }
  // The marker layer: a container that writes /cit-marker (and /broken), committed.
  const script = `echo '${img.marker}' > /cit-marker` + (img.broken ? " && echo 1 > /broken" : "");
  const cid = await must(
    runDocker([
      "create",
      "--network",
      "none",
      "--label",
      `cit=${w.label}`,
      base,
      "sh",
      "-c",
      script,
    ]),
    "docker create",
  );
  try {
    await must(runDocker(["start", "-a", cid]), "docker start");
    await must(
      runDocker(["commit", "--change", `LABEL cit=${w.label}`, "--change", 'CMD ["sh"]', cid, ref]),
      "docker commit",
    );
  } finally {
    await runDocker(["rm", "-f", cid]);
  }
  const id = await must(runDocker(["image", "inspect", "--format", "{{.Id}}", ref]), "inspect");
  made.push(id);
  return id;
}

/** Bytes and mtime of every file under `dir` (recursive), by relative path. */
export async function snapshotFiles(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(p, r);
      else if (e.isFile) {
        const st = await Deno.stat(p);
        out[r] = `${await fileSha256(p)} ${st.mtime?.getTime()} ${st.ino}`;
      }
    }
  };
  await walk(dir, "");
  return out;
}

/** The install runs as a subprocess whose stderr is watched (for kill tests). */
export function spawnCli(args: string[]): {
  child: Deno.ChildProcess;
  /** Resolves when stderr has shown text matching `re` (false if it ended first). */
  waitFor(re: RegExp): Promise<boolean>;
  stderr(): string;
  done: Promise<{ code: number; stdout: string; stderr: string }>;
} {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/main.ts`, ...args],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  let ended = false;
  const waiters: { re: RegExp; res: (b: boolean) => void }[] = [];
  const dec = new TextDecoder();
  const errDone = (async () => {
    for await (const c of child.stderr) {
      err += dec.decode(c, { stream: true });
      for (const w of [...waiters]) {
        if (w.re.test(err)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.res(true);
        }
      }
    }
    ended = true;
    for (const w of waiters) w.res(false);
    waiters.length = 0;
  })();
  const outP = new Response(child.stdout).text();
  const done = (async () => {
    const st = await child.status;
    await errDone;
    return { code: st.code, stdout: await outP, stderr: err };
  })();
  return {
    child,
    waitFor: (re) =>
      re.test(err) || ended
        ? Promise.resolve(re.test(err))
        : new Promise((res) => waiters.push({ re, res })),
    stderr: () => err,
    done,
  };
}
