/**
 * A small world for unit tests of `install` through the Docker seam: in a temp dir, a bundle
 * (a folder of `docker save` tars built in memory, with checksums.sha256), a Cortex dir (compose
 * file, backend/.env), a release manifest, and the models, HF cache and state dirs; plus a
 * context wired to a ScriptedDocker, a fake clock and a doctor that probes nothing of the host.
 */
import { type Context, createContext } from "../../src/context.ts";
import type { DoctorDeps } from "../../src/doctor/mod.ts";
import type { RunResult } from "../../src/docker.ts";
import { type InstallOptions, installOptions } from "../../src/steps/types.ts";
import { dockerSaveTar, sha256 } from "./tarbuild.ts";
import { fakeClock, type ScriptedDocker } from "./scripted_docker.ts";

export interface UnitImage {
  /** The tar's RepoTags[0], e.g. `cit-unit/app:1`. */
  ref: string;
  /** Layer contents (a different content gives another image ID). */
  layers: string[];
}

export interface BuiltTar {
  file: string;
  ref: string;
  imageId: string;
  diffIds: string[];
  size: number;
}

export interface UnitRelease {
  dir: string;
  manifestPath: string;
  tars: BuiltTar[];
}

/**
 * The compose file of the unit world: `gateway` runs a shipped image (optional, as Cortex's
 * gateway is), `postgres` runs `:latest`, a retag of the shipped `:16` (critical).
 */
export function unitCompose(prefix: string): string {
  return `name: cit-unit
services:
  gateway:
    image: ${prefix}/cortex-gateway:1
    network_mode: host
    environment:
      CORTEX_MODELS_DIR: \${CORTEX_MODELS_DIR:-/var/cortex/models}
  postgres:
    image: ${prefix}/postgres:latest
    network_mode: host
`;
}

export class UnitWorld {
  readonly root: string;
  readonly prefix = `cit-unit-${crypto.randomUUID().slice(0, 8)}`;
  readonly cortexDir: string;
  readonly composeFile: string;
  readonly modelsDir: string;
  readonly hfCacheDir: string;
  readonly stateDir: string;
  readonly log: string[] = [];
  readonly clock = fakeClock();
  /** Network probes the doctor ran (none may: every run is forced offline). */
  readonly probed: string[] = [];

  private constructor(root: string) {
    this.root = root;
    this.cortexDir = `${root}/Cortex`;
    this.composeFile = `${this.cortexDir}/docker.compose.prod.yaml`;
    this.modelsDir = `${root}/models`;
    this.hfCacheDir = `${root}/hf-cache`;
    this.stateDir = `${root}/state`;
  }

  static async create(): Promise<UnitWorld> {
    const w = new UnitWorld(await Deno.makeTempDir({ prefix: "cit-unit-install-" }));
    await Deno.mkdir(`${w.cortexDir}/backend`, { recursive: true });
    await Deno.writeTextFile(w.composeFile, unitCompose(w.prefix));
    await Deno.writeTextFile(`${w.cortexDir}/backend/.env`, "# the operator's\nEXISTING=1\n");
    return w;
  }

  /**
   * Writes a release `version`: a folder bundle with one tar per image and its checksums, and a
   * release manifest naming the version.
   */
  async release(version: string, images: UnitImage[]): Promise<UnitRelease> {
    const dir = `${this.root}/bundle-${version}`;
    await Deno.mkdir(dir, { recursive: true });
    const tars: BuiltTar[] = [];
    const sums: string[] = [];
    for (const img of images) {
      const save = dockerSaveTar([{ repoTags: [img.ref], layers: img.layers }], "legacy");
      const file = `${img.ref.split("/").pop()!.replace(":", "-")}.tar`;
      await Deno.writeFile(`${dir}/${file}`, save.tar);
      sums.push(`${sha256(save.tar)}  ${file}\n`);
      tars.push({
        file,
        ref: img.ref,
        imageId: save.images[0].imageId,
        diffIds: save.images[0].diffIds,
        size: save.tar.length,
      });
    }
    await Deno.writeTextFile(`${dir}/checksums.sha256`, sums.join(""));
    const manifestPath = `${this.root}/release-${version}.json`;
    await Deno.writeTextFile(
      manifestPath,
      JSON.stringify({
        schema: 1,
        release: version,
        images: [],
        env: {
          offline: { OFFLINE_MODE: "True", CIT_RELEASE: version },
          online: { OFFLINE_MODE: "False" },
          paths: { CORTEX_MODELS_DIR: "{modelsDir}" },
        },
        readiness: [],
        pins: {},
      }),
    );
    return { dir, manifestPath, tars };
  }

  /**
   * Writes an Admin-UI export of `version` (images/<ref as file name>.tar, db/cortex.sql holding
   * `dump`, checksums.sha256 over both) and a release manifest naming the version.
   */
  async adminRelease(version: string, images: UnitImage[], dump: string): Promise<UnitRelease> {
    const r = await this.release(`${version}-tmp`, images);
    const dir = `${this.root}/admin-${version}`;
    await Deno.mkdir(`${dir}/images`, { recursive: true });
    await Deno.mkdir(`${dir}/db`, { recursive: true });
    const sums: string[] = [];
    for (const t of r.tars) {
      const file = `images/${t.ref.replaceAll(":", "__").replaceAll("/", "_")}.tar`;
      const bytes = await Deno.readFile(`${r.dir}/${t.file}`);
      await Deno.writeFile(`${dir}/${file}`, bytes);
      sums.push(`${sha256(bytes)}  ${file}\n`);
      t.file = file;
    }
    await Deno.writeTextFile(`${dir}/db/cortex.sql`, dump);
    sums.push(`${sha256(dump)}  db/cortex.sql\n`);
    await Deno.writeTextFile(`${dir}/checksums.sha256`, sums.join(""));
    const manifestPath = `${this.root}/release-${version}.json`;
    await Deno.writeTextFile(
      manifestPath,
      (await Deno.readTextFile(r.manifestPath)).replaceAll(`${version}-tmp`, version),
    );
    return { dir, manifestPath, tars: r.tars };
  }

  /** The images of a release: cortex-gateway:1 and postgres:16 (run as :latest). */
  images(tag: string): UnitImage[] {
    return [
      { ref: `${this.prefix}/cortex-gateway:1`, layers: ["base", `gateway ${tag}`] },
      { ref: `${this.prefix}/postgres:16`, layers: ["base", `postgres ${tag}`] },
    ];
  }

  /** Install options for a release, unattended and forced offline (no network probe). */
  options(r: UnitRelease, more: Partial<InstallOptions> = {}): InstallOptions {
    return installOptions({
      bundleDir: r.dir,
      cortexDir: this.cortexDir,
      composeFile: this.composeFile,
      project: this.prefix,
      modelsDir: this.modelsDir,
      hfCacheDir: this.hfCacheDir,
      stateDir: this.stateDir,
      manifestPath: r.manifestPath,
      network: "offline",
      waitTimeoutSec: 30,
      argv: ["install", "--yes"],
      ...more,
    });
  }

  /** A context on the scripted engine, the fake clock and a doctor that probes nothing. */
  context(docker: ScriptedDocker): Context {
    return createContext({
      sink: { write: (t) => void this.log.push(t), isTTY: false },
      interactive: false,
      env: { USER: "tester" },
      cwd: this.root,
      execDir: this.root,
      docker,
      now: this.clock.now,
      sleep: this.clock.sleep,
      doctorDeps: hostlessDoctor(docker, this.probed),
    });
  }

  async cleanup(): Promise<void> {
    await Deno.remove(this.root, { recursive: true });
  }
}

/**
 * The doctor's probes of the host replaced: docker goes to the scripted engine, `df` reports
 * plenty of room, every other command (nvidia-smi, ip) is absent, ports are free; a network probe
 * is recorded in `probed` and fails.
 */
export function hostlessDoctor(docker: ScriptedDocker, probed: string[]): Partial<DoctorDeps> {
  const absent = (cmd: string): RunResult => ({
    code: 127,
    stdout: "",
    stderr: `${cmd}: command not found`,
  });
  const probe = (name: string) => () => {
    probed.push(name);
    return Promise.resolve({ ok: false, detail: "no network in unit tests" });
  };
  return {
    run: (cmd, args) =>
      cmd === "docker"
        ? docker.run(args)
        : cmd === "df"
        ? Promise.resolve({ code: 0, stdout: `Avail Mounted on\n${2 ** 50} /\n`, stderr: "" })
        : Promise.resolve(absent(cmd)),
    probes: { route: probe("route"), dns: probe("dns"), connect: probe("connect") },
    stat: () => Promise.resolve({ dev: 1 }),
    listen: () => "free",
    processOf: () => Promise.resolve(undefined),
    readText: (p) =>
      p.startsWith("/proc/") || p.startsWith("/sys/")
        ? Promise.resolve(undefined)
        : Deno.readTextFile(p).catch(() => undefined),
    uid: () => 0,
  };
}
