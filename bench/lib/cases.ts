/**
 * The suite's cases (issue 11's table): load, slow-media, shared-base, upgrade, rerun, models,
 * hash, memory. Each builds its own inputs on the real engine, measures whole processes through
 * `runRounds`, removes only what it made, and returns a CaseResult with the ratios and targets.
 */
import { isRoot, randomFile, sh, type Timed, timed, tryRun } from "./proc.ts";
import {
  type BundleImage,
  layeredImage,
  MiB,
  removeLabelled,
  removeRefs,
  saveBundle,
  sha256File,
} from "./images.ts";
import {
  type CaseResult,
  type Contender,
  type Measured,
  median,
  pick,
  type Ratio,
  ratio,
  runRounds,
  say,
} from "./suite.ts";
import { slowMedia } from "./throttle.ts";
import { buildReleases, newWorld } from "../../test/support/release_fixture.ts";

/** Sizes and rounds of a run: the full suite or `--quick`. */
export interface Sizes {
  quick: boolean;
  rounds: number;
  /** Layers of the load case's engine image (bytes). */
  engineLayers: number[];
  /** Payload of each of the five small images. */
  small: number;
  /** shared-base: the shared base layer and each engine's own layer. */
  sharedBase: number;
  sharedOwn: number;
  /** upgrade: the engine image's size (90% of it shared). */
  upgrade: number;
  /** models: (a) one file, (b) eight shards of this size. */
  modelOne: number;
  modelShard: number;
  /**
   * memory: the sizes (peak RSS must not grow with size). --quick has one, measured by the other
   * cases at that size: a second one would build another installed world (25 s of CI).
   */
  memory: number[];
  /** rerun: the engine image's size. */
  rerun: number;
}

export const FULL: Sizes = {
  quick: false,
  rounds: 3,
  engineLayers: [256 * MiB, 256 * MiB, 256 * MiB, 256 * MiB],
  small: 16 * MiB,
  sharedBase: 600 * MiB,
  sharedOwn: 50 * MiB,
  upgrade: 1024 * MiB,
  modelOne: 1024 * MiB,
  modelShard: 128 * MiB,
  memory: [1024 * MiB, 4096 * MiB],
  rerun: 1024 * MiB,
};

export const QUICK: Sizes = {
  quick: true,
  rounds: 1,
  engineLayers: [4 * MiB, 4 * MiB],
  small: 1 * MiB,
  sharedBase: 8 * MiB,
  sharedOwn: 1 * MiB,
  upgrade: 10 * MiB,
  modelOne: 8 * MiB,
  modelShard: 1 * MiB,
  memory: [8 * MiB],
  rerun: 8 * MiB,
};

/** What every case gets. */
export interface Env {
  sizes: Sizes;
  /** Repository root (main.ts lives there). */
  repo: string;
  /** Scratch folder of this run. */
  work: string;
  /** The `cit=<label>` label of every image this run makes. */
  label: string;
  /** Peak RSS facts gathered by other cases for the memory case (`load@1024MiB` -> bytes). */
  memory: Map<string, number>;
  /** `--compare REV`: the root of a checkout of REV, measured as an extra contender. */
  compareRoot?: string;
  compareRev?: string;
}

const DENO = Deno.execPath();

/** `deno run -A <root>/main.ts ...args`. */
function cli(root: string, ...args: string[]): string[] {
  return [DENO, "run", "-A", `${root}/main.ts`, ...args];
}

const mb = (b: number) => `${(b / MiB).toFixed(0)} MiB`;

/** Loops `docker load -i` over a bundle's tars (the floor). */
const dockerLoadAll = (dir: string, files: string[]): string[] => [
  "sh",
  "-c",
  'cd "$1" && shift && for f in "$@"; do docker load -i "$f" > /dev/null || exit 1; done',
  "sh",
  dir,
  ...files,
];

/** Cortex's method: `sha256sum -c` of the checksums, then `docker load -i` of every tar. */
const cortexMethod = (dir: string, files: string[]): string[] => [
  "sh",
  "-c",
  'cd "$1" && shift && sha256sum -c --quiet checksums.sha256 && ' +
  'for f in "$@"; do docker load -i "$f" > /dev/null || exit 1; done',
  "sh",
  dir,
  ...files,
];

/** Checks a `load --json` report: every image loaded. */
function loadedAll(n: number) {
  return (t: Timed) => {
    const j = JSON.parse(t.stdout);
    const loaded = (j.images ?? []).filter((i: { verdict: string }) => i.verdict === "loaded");
    if (loaded.length !== n) throw new Error(`load: ${loaded.length}/${n} loaded: ${t.stdout}`);
  };
}

/** Our contenders (this tree, and the --compare checkout when given). */
function ours(
  env: Env,
  base: Omit<Contender, "id" | "label" | "cmd">,
  args: string[],
): Contender[] {
  const out: Contender[] = [{
    ...base,
    id: "ours",
    label: "cortex-install",
    cmd: cli(env.repo, ...args),
  }];
  if (env.compareRoot) {
    out.push({
      ...base,
      id: "compare",
      label: `cortex-install at ${env.compareRev}`,
      cmd: cli(env.compareRoot, ...args),
    });
  }
  return out;
}

function compareRatio(env: Env, ms: Measured[]): Ratio[] {
  if (!env.compareRoot) return [];
  return [
    ratio(
      "vs-rev",
      `ours vs ${env.compareRev} (faster)`,
      pick(ms, "compare").median / pick(ms, "ours").median,
      "faster",
    ),
  ];
}

// ----------------------------------------------------------------------------------------------
// The load bundle, shared by load, slow-media and hash.

/** The load case's bundle: a layered engine image and five small ones. */
export interface LoadBundle {
  dir: string;
  images: BundleImage[];
  refs: string[];
  bytes: number;
}

let loadBundle: Promise<LoadBundle> | undefined;

/** Builds (once per run) the bundle of one 1 GiB engine image in several layers and 5 small. */
export function theLoadBundle(env: Env): Promise<LoadBundle> {
  loadBundle ??= (async () => {
    const ns = `cit-bench-${env.label}`;
    const s = env.sizes;
    say(
      `building the load bundle: engine ${s.engineLayers.map(mb).join(" + ")}, 5 x ${mb(s.small)}`,
    );
    const built: { ref: string; id: string; engine?: boolean }[] = [];
    const vllm = `${ns}/vllm-openai:v0.6.3`;
    built.push({
      ref: vllm,
      id: await layeredImage(vllm, env.label, s.engineLayers, { work: env.work }),
      engine: true,
    });
    for (
      const name of [
        "postgres:16",
        "cortex-gateway:latest",
        "redis:7",
        "dcgm-exporter:3.3.5",
        "prometheus:v2.54",
      ]
    ) {
      const ref = `${ns}/${name}`;
      built.push({ ref, id: await layeredImage(ref, env.label, [s.small], { work: env.work }) });
    }
    const dir = `${env.work}/load-bundle`;
    const images = await saveBundle(dir, built);
    await removeRefs(built.map((b) => b.ref));
    return {
      dir,
      images,
      refs: built.map((b) => b.ref),
      bytes: images.reduce((a, i) => a + i.size, 0),
    };
  })();
  return loadBundle;
}

function notesOf(b: LoadBundle): string {
  const e = b.images.find((i) => i.engine)!;
  return `bundle: ${mb(b.bytes)} in ${b.images.length} tars (engine tar ${mb(e.size)}, ${
    b.images.length - 1
  } small tars)`;
}

// ----------------------------------------------------------------------------------------------

/** load: `load` of the load bundle against `docker load -i` of every tar and Cortex's method. */
export async function loadCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const b = await theLoadBundle(env);
  const files = b.images.map((i) => i.file);
  const reset = () => removeRefs(b.refs);
  const cs: Contender[] = [
    ...ours(env, { prepare: reset, check: loadedAll(files.length) }, [
      "load",
      "--bundle",
      b.dir,
      "--json",
    ]),
    {
      id: "floor",
      label: "`docker load -i` of every tar (the floor)",
      cmd: dockerLoadAll(b.dir, files),
      prepare: reset,
    },
    {
      id: "cortex",
      label: "Cortex's method (`sha256sum -c`, then `docker load -i`)",
      cmd: cortexMethod(b.dir, files),
      prepare: reset,
    },
  ];
  const ms = await runRounds(cs, env.sizes.rounds);
  await reset();
  const o = pick(ms, "ours");
  if (o.peakRss) {
    env.memory.set(`load@${mb(env.sizes.engineLayers.reduce((a, x) => a + x, 0))}`, o.peakRss);
  }
  return {
    id: "load",
    title: "load: a 1 GiB engine image (4 layers) and five small images",
    contenders: ms,
    ratios: [
      ratio(
        "vs-floor",
        "ours / `docker load -i` (time)",
        o.median / pick(ms, "floor").median,
        "time",
        { op: "<=", value: 1.05 },
      ),
      ratio(
        "vs-cortex",
        "faster than Cortex's method",
        pick(ms, "cortex").median / o.median,
        "faster",
        { op: ">=", value: 1.25 },
      ),
      ...compareRatio(env, ms),
    ],
    notes: [notesOf(b)],
  };
}

/**
 * slow-media's memory cap, page cache included: less than the bundle, as a 20 GB Cortex bundle is
 * more than a host keeps cached; more than any contender's own memory (ours peaks near 100 MB).
 */
const MEDIA_MEMORY = 512 * 2 ** 20;

/** slow-media: the load case on the throttled loop-mounted copy (root only), plus one read of it. */
export async function slowMediaCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const base = {
    id: "slow-media",
    title:
      "slow-media: the load bundle on a loop-mounted filesystem read at 100 MB/s, 512 MiB of memory",
    contenders: [],
    ratios: [],
    notes: [] as string[],
  };
  if (!isRoot()) return { ...base, skipped: "not root: no loop mount, no blkio throttle" };
  const b = await theLoadBundle(env);
  const media = await slowMedia(env.work, b.dir, b.bytes, 100 * 1000 * 1000, MEDIA_MEMORY);
  if ("skipped" in media) return { ...base, skipped: media.skipped };
  try {
    const files = b.images.map((i) => i.file);
    const reset = () => removeRefs(b.refs);
    const cg = media.cgroups;
    const cs: Contender[] = [
      ...ours(env, { prepare: reset, check: loadedAll(files.length), cgroups: cg }, [
        "load",
        "--bundle",
        media.dir,
        "--json",
      ]),
      {
        id: "floor",
        label: "`docker load -i` of every tar",
        cmd: dockerLoadAll(media.dir, files),
        prepare: reset,
        cgroups: cg,
      },
      {
        id: "cortex",
        label: "Cortex's method (`sha256sum -c`, then `docker load -i`)",
        cmd: cortexMethod(media.dir, files),
        prepare: reset,
        cgroups: cg,
      },
      {
        id: "read",
        label: "one read of the bundle (`cat` > /dev/null: the physical floor)",
        cmd: ["sh", "-c", 'cat "$1"/*.tar > /dev/null', "sh", media.dir],
        cgroups: cg,
      },
    ];
    const ms = await runRounds(cs, env.sizes.rounds);
    await reset();
    const o = pick(ms, "ours");
    return {
      ...base,
      contenders: ms,
      ratios: [
        ratio(
          "vs-cortex",
          "faster than Cortex's method",
          pick(ms, "cortex").median / o.median,
          "faster",
          { op: ">=", value: 1.8 },
        ),
        ratio(
          "vs-floor",
          "ours / `docker load -i` (time)",
          o.median / pick(ms, "floor").median,
          "time",
          { op: "<=", value: 1.05 },
        ),
        ratio(
          "vs-read",
          "ours / one read of the bundle (time)",
          o.median / pick(ms, "read").median,
          "time",
        ),
        ...compareRatio(env, ms),
      ],
      notes: [notesOf(b), ...media.notes],
    };
  } finally {
    await media.close();
  }
}

/** shared-base: two engine images on one base layer, against `docker load -i` of both tars. */
export async function sharedBaseCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const s = env.sizes;
  const ns = `cit-bench-${env.label}`;
  say(`building shared-base: base ${mb(s.sharedBase)}, two engines of +${mb(s.sharedOwn)}`);
  const baseRef = `${ns}/cuda-base:12`;
  await layeredImage(baseRef, env.label, [s.sharedBase], { work: env.work });
  const vllm = `${ns}/vllm-openai:v0.6.3-sb`;
  const llama = `${ns}/llamacpp-server:b4000-sb`;
  const built = [
    {
      ref: vllm,
      id: await layeredImage(vllm, env.label, [s.sharedOwn], { base: baseRef, work: env.work }),
      engine: true,
    },
    {
      ref: llama,
      id: await layeredImage(llama, env.label, [s.sharedOwn], { base: baseRef, work: env.work }),
      engine: true,
    },
  ];
  const dir = `${env.work}/shared-bundle`;
  const images = await saveBundle(dir, built);
  const refs = [vllm, llama, baseRef];
  await removeRefs(refs);
  const reset = () => removeRefs(refs);
  try {
    return await againstDockerLoad(env, {
      id: "shared-base",
      title: "shared-base: vLLM and llama.cpp images sharing a 600 MB base layer",
      dir,
      files: images.map((i) => i.file),
      reset,
      floorLabel: "`docker load -i` of both tars",
      ratioLabel: "faster than `docker load -i` of both",
      target: 1.25,
      notes: [
        `tars: ${images.map((i) => `${i.file} ${mb(i.size)}`).join(", ")}; base layer ${
          mb(s.sharedBase)
        }`,
      ],
    });
  } finally {
    await reset();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * A load case whose only baseline is `docker load -i` of the same tars (shared-base, upgrade):
 * ours and the floor from `reset`'s state, rounds, and the "faster than" ratio with its target.
 */
async function againstDockerLoad(env: Env, o: {
  id: string;
  title: string;
  dir: string;
  files: string[];
  /** Puts the engine back into the state both start from. */
  reset: () => Promise<void>;
  floorLabel: string;
  ratioLabel: string;
  target: number;
  notes: string[];
}): Promise<Omit<CaseResult, "seconds">> {
  const cs: Contender[] = [
    ...ours(env, { prepare: o.reset, check: loadedAll(o.files.length) }, [
      "load",
      "--bundle",
      o.dir,
      "--json",
    ]),
    { id: "floor", label: o.floorLabel, cmd: dockerLoadAll(o.dir, o.files), prepare: o.reset },
  ];
  const ms = await runRounds(cs, env.sizes.rounds);
  return {
    id: o.id,
    title: o.title,
    contenders: ms,
    ratios: [
      ratio(
        "vs-floor",
        o.ratioLabel,
        pick(ms, "floor").median / pick(ms, "ours").median,
        "faster",
        { op: ">=", value: o.target },
      ),
      ...compareRatio(env, ms),
    ],
    notes: o.notes,
  };
}

/** upgrade: a v2 tar sharing 90% of its bytes with the installed v1, against `docker load -i`. */
export async function upgradeCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const s = env.sizes;
  const ns = `cit-bench-${env.label}`;
  const baseBytes = Math.round(s.upgrade * 0.9);
  const own = s.upgrade - baseBytes;
  say(`building upgrade: base ${mb(baseBytes)}, v1 and v2 each +${mb(own)}`);
  const baseRef = `${ns}/vllm-base:1`;
  await layeredImage(baseRef, env.label, [baseBytes], { work: env.work });
  const v1 = `${ns}/vllm-openai:v0.6.3-up`;
  const v2 = `${ns}/vllm-openai:v0.6.4-up`;
  await layeredImage(v1, env.label, [own], { base: baseRef, work: env.work });
  const v2Id = await layeredImage(v2, env.label, [own], { base: baseRef, work: env.work });
  const dir = `${env.work}/upgrade-bundle`;
  const images = await saveBundle(dir, [{ ref: v2, id: v2Id, engine: true }]);
  await removeRefs([v2, baseRef]); // v1 stays: the installed release
  const reset = () => removeRefs([v2]);
  try {
    return await againstDockerLoad(env, {
      id: "upgrade",
      title: "upgrade: a v2 engine tar sharing 90% of its bytes with the installed v1",
      dir,
      files: [images[0].file],
      reset,
      floorLabel: "`docker load -i`",
      ratioLabel: "faster than `docker load -i`",
      target: 1.7,
      notes: [`v2 tar ${mb(images[0].size)}, ${mb(baseBytes)} of it in the base layer v1 has`],
    });
  } finally {
    await removeRefs([v2, v1, baseRef]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** A world with an installed bundle whose engine image has `bytes` (release_fixture). */
async function installedWorld(bytes: number) {
  const w = await newWorld();
  try {
    const [r] = await buildReleases(w, [{
      version: "0.1.1",
      images: [
        { repo: "vllm-openai", tag: "v0.6.3", marker: "v", engine: true, payload: bytes },
        { repo: "postgres", tag: "16", marker: "p" },
        { repo: "cortex-gateway", tag: "latest", marker: "g" },
      ],
      models: { "tiny/config.json": "{}\n" },
    }]);
    return { w, r };
  } catch (e) {
    await w.cleanup();
    throw e;
  }
}

/** Checks an `install --json` report's outcome. */
function outcome(want: string) {
  return (t: Timed) => {
    const j = JSON.parse(t.stdout);
    if (j.outcome !== want) throw new Error(`install outcome ${j.outcome}, want ${want}`);
  };
}

/** rerun: `install` again over the installed bundle, against Cortex's method. */
export async function rerunCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  say(`building the rerun world: engine image ${mb(env.sizes.rerun)}`);
  const { w, r } = await installedWorld(env.sizes.rerun);
  try {
    // --quick: no stack start (its health wait is most of the CI cost; the re-run path is the same).
    const args = [...w.installArgs(r.dir), "--json", ...(env.sizes.quick ? ["--skip-start"] : [])];
    const first = await timed(cli(env.repo, ...args));
    if (first.code !== 0) throw new Error(`first install: ${first.stderr.slice(-2000)}`);
    if (first.peakRss) env.memory.set(`install@${mb(env.sizes.rerun)}`, first.peakRss);
    say(`  first install: ${first.seconds.toFixed(2)} s`);
    const files = Object.values(r.files);
    const cs: Contender[] = [
      {
        id: "ours",
        label: "`install` again (unchanged)",
        cmd: cli(env.repo, ...args),
        check: outcome("unchanged"),
      },
      {
        id: "cortex",
        label: "Cortex's method (`sha256sum -c`, then `docker load -i`)",
        cmd: cortexMethod(r.dir, files),
      },
    ];
    const ms = await runRounds(cs, env.sizes.rounds);
    const o = pick(ms, "ours");
    return {
      id: "rerun",
      title: "rerun: `install` over the installed bundle",
      contenders: ms,
      ratios: [
        ratio("seconds", "re-run, whole process (s)", o.median, "seconds", { op: "<", value: 2 }),
        ratio(
          "vs-cortex",
          "faster than Cortex's method",
          pick(ms, "cortex").median / o.median,
          "faster",
        ),
      ],
      notes: [
        `engine image ${mb(env.sizes.rerun)}; first install ${
          first.seconds.toFixed(2)
        } s (not a contender)`,
      ],
    };
  } finally {
    await w.cleanup();
  }
}

/** A bundle-like folder with `models/<name>/` files of random bytes and checksums.sha256. */
async function modelBundle(dir: string, models: Record<string, number[]>): Promise<void> {
  const lines: string[] = [];
  for (const [name, sizes] of Object.entries(models)) {
    await Deno.mkdir(`${dir}/models/${name}`, { recursive: true });
    for (const [i, size] of sizes.entries()) {
      const file = sizes.length === 1
        ? "model.gguf"
        : `model-${String(i + 1).padStart(5, "0")}-of-${
          String(sizes.length).padStart(5, "0")
        }.safetensors`;
      const p = `${dir}/models/${name}/${file}`;
      await randomFile(p, size);
      lines.push(`${await sha256File(p)}  models/${name}/${file}`);
    }
  }
  await Deno.writeTextFile(`${dir}/checksums.sha256`, lines.join("\n") + "\n");
}

const seedCmd = (env: Env, bundle: string, name: string, out: string) => [
  DENO,
  "run",
  "-A",
  `${env.repo}/bench/lib/seed.ts`,
  bundle,
  name,
  out,
];

/** `find DIR -type f -exec sync {} +`: fsync of each copied file, what we do before a rename. */
const cpSync = (src: string, dst: string) => [
  "sh",
  "-c",
  'cp -r "$1" "$2" && find "$2" -type f -exec sync {} +',
  "sh",
  src,
  dst,
];

/** models: seeding (a) one file, (b) eight shards, against `cp -r` + `sync` and `cp -r`. */
export async function modelsCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const s = env.sizes;
  const bundle = `${env.work}/model-bundle`;
  say(`writing models: one ${mb(s.modelOne)} file, 8 x ${mb(s.modelShard)}`);
  await modelBundle(bundle, { one: [s.modelOne], shards: Array(8).fill(s.modelShard) });
  const out = `${env.work}/models-out`;
  const clean = async () => {
    await Deno.remove(out, { recursive: true }).catch(() => {});
    await Deno.mkdir(out, { recursive: true });
    await tryRun(["sync"]); // nobody pays for an earlier contender's dirty pages
  };
  const results: Measured[] = [];
  const ratios: Ratio[] = [];
  try {
    for (const [name, what] of [["one", "a"], ["shards", "b"]] as const) {
      const src = `${bundle}/models/${name}`;
      const cs: Contender[] = [
        {
          id: `ours-${what}`,
          label: `(${what}) seeding (copy + SHA-256 + fsync + rename)`,
          cmd: seedCmd(env, bundle, name, out),
          prepare: clean,
        },
        {
          id: `cpsync-${what}`,
          label: `(${what}) \`cp -r\` + \`sync\` of each file`,
          cmd: cpSync(src, `${out}/${name}`),
          prepare: clean,
        },
        {
          id: `cp-${what}`,
          label: `(${what}) \`cp -r\``,
          cmd: ["cp", "-r", src, `${out}/${name}`],
          prepare: clean,
        },
      ];
      if (what === "a") {
        cs.push({
          id: "hash-a",
          label: "(a) SHA-256 alone of the file (one core, our hashFile)",
          cmd: [DENO, "run", "-A", `${env.repo}/bench/lib/seed.ts`, "--hash", `${src}/model.gguf`],
        });
      }
      const ms = await runRounds(cs, s.rounds);
      results.push(...ms);
      const o = pick(ms, `ours-${what}`);
      if (what === "a" && o.peakRss) env.memory.set(`seed@${mb(s.modelOne)}`, o.peakRss);
      ratios.push(
        ratio(
          `vs-cpsync-${what}`,
          `(${what}) speed vs \`cp -r\` + \`sync\``,
          pick(ms, `cpsync-${what}`).median / o.median,
          "faster",
          what === "b" ? { op: ">=", value: 0.9 } : undefined,
        ),
        ratio(
          `vs-cp-${what}`,
          `(${what}) speed vs \`cp -r\``,
          pick(ms, `cp-${what}`).median / o.median,
          "faster",
        ),
      );
      if (what === "a") {
        const bound = Math.max(pick(ms, "hash-a").median, pick(ms, "cpsync-a").median);
        ratios.push(
          ratio(
            "vs-bound-a",
            "(a) speed vs its bound (max of one core's SHA-256, `cp` + `sync`)",
            bound / o.median,
            "faster",
          ),
        );
      }
    }
  } finally {
    await Deno.remove(out, { recursive: true }).catch(() => {});
    await Deno.remove(bundle, { recursive: true }).catch(() => {});
  }
  return {
    id: "models",
    title: "models: seeding (a) one 1 GiB file, (b) eight 128 MiB shards",
    contenders: results,
    ratios,
    notes: [
      "ours runs the install's seeding code (planModels + seedModels) in its own process (bench/lib/seed.ts): install has no models-only command",
    ],
  };
}

/** hash: `verify` of the engine tar against `sha256sum` and `openssl dgst -sha256`. */
export async function hashCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const b = await theLoadBundle(env);
  const e = b.images.find((i) => i.engine)!;
  const dir = `${env.work}/hash-bundle`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.link(`${b.dir}/${e.file}`, `${dir}/${e.file}`).catch(() =>
    Deno.copyFile(`${b.dir}/${e.file}`, `${dir}/${e.file}`)
  );
  await Deno.writeTextFile(
    `${dir}/checksums.sha256`,
    `${await sha256File(`${dir}/${e.file}`)}  ${e.file}\n`,
  );
  const { writeManifest } = await import("./images.ts");
  await writeManifest(dir, [e]);
  const file = `${dir}/${e.file}`;
  try {
    const cs: Contender[] = [
      {
        id: "ours",
        label: "`verify` (SHA-256 of the tar, whole process)",
        cmd: cli(env.repo, "verify", "--bundle", dir, "--json"),
      },
      { id: "sha256sum", label: "`sha256sum`", cmd: ["sha256sum", file] },
      { id: "openssl", label: "`openssl dgst -sha256`", cmd: ["openssl", "dgst", "-sha256", file] },
    ];
    const ms = await runRounds(cs, env.sizes.rounds);
    const o = pick(ms, "ours");
    return {
      id: "hash",
      title: "hash: SHA-256 of the 1 GiB engine tar",
      contenders: ms,
      ratios: [
        ratio(
          "vs-sha256sum",
          "faster than `sha256sum`",
          pick(ms, "sha256sum").median / o.median,
          "faster",
        ),
        ratio(
          "vs-openssl",
          "faster than `openssl dgst -sha256`",
          pick(ms, "openssl").median / o.median,
          "faster",
        ),
      ],
      notes: [`file: ${mb(e.size)}; ours includes Deno's start-up and reading the tar's headers`],
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** memory: peak RSS of load, install and seeding at each size (from the other cases, or measured here). */
export async function memoryCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const sizes = env.sizes.memory;
  const notes: string[] = [];
  const limit = 300 * 1000 * 1000;
  // The smaller size: from the other cases when they ran at it, else measured here.
  const at = async (bytes: number) => {
    const key = (k: string) => `${k}@${mb(bytes)}`;
    const have = (k: string) => env.memory.has(key(k));
    if (have("install") && have("load") && have("seed")) return;
    say(`memory: building an install of ${mb(bytes)}`);
    const { w, r } = await installedWorld(bytes);
    try {
      const args = [...w.installArgs(r.dir), "--json", "--skip-start"];
      const first = await timed(cli(env.repo, ...args));
      if (first.code !== 0) throw new Error(`install: ${first.stderr.slice(-2000)}`);
      if (first.peakRss) env.memory.set(key("install"), first.peakRss);
      await removeRefs(Object.keys(r.ids));
      const load = await timed(cli(env.repo, "load", "--bundle", r.dir, "--json"));
      if (load.code !== 0) throw new Error(`load: ${load.stderr.slice(-2000)}`);
      if (load.peakRss) env.memory.set(key("load"), load.peakRss);
      // Seeding: the engine tar itself as a model file of that size.
      const mbundle = `${env.work}/mem-models`;
      await Deno.mkdir(`${mbundle}/models/big`, { recursive: true });
      const tar = `${r.dir}/vllm-openai-v0.6.3.tar`;
      await Deno.link(tar, `${mbundle}/models/big/model.gguf`);
      await Deno.writeTextFile(
        `${mbundle}/checksums.sha256`,
        `${await sha256File(tar)}  models/big/model.gguf\n`,
      );
      const seed = await timed(seedCmd(env, mbundle, "big", `${env.work}/mem-out`));
      await Deno.remove(mbundle, { recursive: true }).catch(() => {});
      await Deno.remove(`${env.work}/mem-out`, { recursive: true }).catch(() => {});
      if (seed.code !== 0) throw new Error(`seed: ${seed.stderr.slice(-2000)}`);
      if (seed.peakRss) env.memory.set(key("seed"), seed.peakRss);
      notes.push(
        `${mb(bytes)}: install (first, --skip-start) ${first.seconds.toFixed(1)} s, load ${
          load.seconds.toFixed(1)
        } s, seeding ${seed.seconds.toFixed(1)} s`,
      );
    } finally {
      await w.cleanup();
    }
  };
  for (const bytes of sizes) await at(bytes);
  const ratios: Ratio[] = [];
  for (const what of ["load", "install", "seed"]) {
    for (const bytes of sizes) {
      const v = env.memory.get(`${what}@${mb(bytes)}`);
      if (v === undefined) continue;
      ratios.push(
        ratio(
          `${what}-${mb(bytes).replace(" ", "")}`,
          `peak RSS of ${what === "seed" ? "model seeding" : `\`${what}\``} at ${mb(bytes)} (MB)`,
          v / 1e6,
          "MB",
          { op: "<", value: limit / 1e6 },
        ),
      );
    }
  }
  const contenders: Measured[] = [];
  if (env.memory.size === 0) notes.push("no /usr/bin/time: peak RSS not measured");
  notes.push(
    "peak RSS: GNU time's %M (the deno process; `docker` children are counted only while it waits on them)",
  );
  return {
    id: "memory",
    title: "memory: peak RSS of load, install and model seeding",
    contenders,
    ratios,
    notes,
  };
}

/**
 * db (not in the default run: not in issue 11's table; `--only db`): backup and restore of a
 * Cortex-like database with 100k usage rows (bench/lib/db.ts, issue 9), its summary as notes.
 */
export async function dbCase(env: Env): Promise<Omit<CaseResult, "seconds">> {
  const args = ["--rounds", String(env.sizes.rounds)];
  if (env.sizes.quick) args.push("--rows", "2000");
  const t = await timed([DENO, "run", "-A", `${env.repo}/bench/lib/db.ts`, ...args]);
  if (t.code !== 0) throw new Error(`bench/lib/db.ts: ${t.stderr.slice(-2000)}`);
  return {
    id: "db",
    title: "db: backup and restore of a Cortex 0.1 database (100k usage rows)",
    contenders: [],
    ratios: [],
    notes: t.stdout.trim().split("\n").map((l) => `\`${l.trim()}\``),
  };
}

/** The cases of the default run (issue 11's table), in the order the suite runs them. */
export const CASES: Record<string, (env: Env) => Promise<Omit<CaseResult, "seconds">>> = {
  load: loadCase,
  "slow-media": slowMediaCase,
  "shared-base": sharedBaseCase,
  upgrade: upgradeCase,
  rerun: rerunCase,
  models: modelsCase,
  hash: hashCase,
  memory: memoryCase,
};

/** Cases run only when named with --only. */
export const EXTRA_CASES: Record<string, (env: Env) => Promise<Omit<CaseResult, "seconds">>> = {
  db: dbCase,
};

export { median, removeLabelled, sh };
