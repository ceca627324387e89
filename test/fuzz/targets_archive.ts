/**
 * Fuzz target: extraction of the Admin-UI model archives (src/host/models/archive.ts):
 * `models.tar.gz`, `model-<id>-files.tar.gz` and `hf-cache.tar.gz`, mutated with `..` and
 * absolute names, symlinks and hard links (into siblings, out, loops), devices, FIFOs,
 * duplicated entries and byte damage. Runs the real models step into a scratch folder.
 */
import { join } from "node:path";
import { createContext } from "../../src/context.ts";
import { planModels } from "../../src/host/models/plan.ts";
import { seedModels } from "../../src/host/models/copy.ts";
import type { ModelSource } from "../../src/bundle/types.ts";
import { buildTar, gzip, sha256 } from "../support/tarbuild.ts";
import { mutate, prop, type Rng, type Target } from "./harness.ts";
import { decode, encode, type Ent } from "./targets_tar.ts";

const LAYOUTS = [
  {
    name: "models.tar.gz",
    source: { kind: "models-archive", path: "models.tar.gz" } as ModelSource,
    root: "models",
    seed: buildTar([
      { name: "models/", type: "5" },
      { name: "models/a/", type: "5" },
      { name: "models/a/config.json", data: "{}" },
      { name: "models/a/tokenizer.json", data: "{}" },
      { name: "models/a/model.safetensors", data: "w" },
      { name: "models/b/m.gguf", data: "gguf" },
      { name: "models/b/same.gguf", type: "1", linkname: "models/b/m.gguf" },
      { name: "models/b/link.gguf", type: "2", linkname: "m.gguf" },
    ]),
  },
  {
    name: "model-9-files.tar.gz",
    source: { kind: "model-archive", id: "9", path: "model-9-files.tar.gz" } as ModelSource,
    root: "",
    seed: buildTar([
      { name: "m9/", type: "5" },
      { name: "m9/config.json", data: "{}" },
      { name: "m9/tokenizer.json", data: "{}" },
      { name: "m9/model.safetensors", data: "w" },
    ]),
  },
  {
    name: "hf-cache.tar.gz",
    source: { kind: "hf-cache-archive", path: "hf-cache.tar.gz" } as ModelSource,
    root: "hf-cache",
    seed: buildTar([
      { name: "hf-cache/models--org--m/blobs/abc", data: "weights" },
      {
        name: "hf-cache/models--org--m/snapshots/r1/model.safetensors",
        type: "2",
        linkname: "../../blobs/abc",
      },
      { name: "hf-cache/models--org--m/refs/main", data: "r1" },
    ]),
  },
];

const BAD_NAMES = [
  "../evil",
  "/tmp/cit-fuzz-evil",
  "models/../../evil",
  "models/a/../../x",
  "m9/../../x",
  "hf-cache/../x",
];
const BAD_LINKS = [
  "..",
  "../..",
  "../b/m.gguf",
  "../../../etc/passwd",
  "/etc/passwd",
  ".",
  "loop",
  "models/b/m.gguf",
  "../m2/a",
];

function mutateArchive(rng: Rng, ents: Ent[]): void {
  const e = rng.pick(ents);
  switch (rng.int(7)) {
    case 0:
      e.name = rng.pick(BAD_NAMES);
      break;
    case 1:
      ents.push({
        name: e.name.replace(/[^/]*$/, "l" + rng.int(9)),
        type: rng.pick(["1", "2"]),
        data: new Uint8Array(),
        linkname: rng.pick(BAD_LINKS),
      });
      break;
    case 2:
      ents.push({
        name: e.name.replace(/[^/]*$/, "dev"),
        type: rng.pick(["3", "4", "6"]),
        data: new Uint8Array(),
      });
      break;
    case 3:
      ents.push({ ...e, data: new TextEncoder().encode("other") });
      break;
    case 4: // write through a link: a link to ".", then a file under it
      ents.push({
        name: e.name.replace(/[^/]*$/, "d"),
        type: "2",
        data: new Uint8Array(),
        linkname: rng.pick([".", "..", "/tmp"]),
      });
      ents.push({
        name: e.name.replace(/[^/]*$/, "d/f"),
        type: "0",
        data: new TextEncoder().encode("x"),
      });
      break;
    case 5:
      e.longName = true;
      e.name = e.name.replace(/[^/]*$/, "n".repeat(150));
      break;
    default:
      ents.splice(rng.int(ents.length), 1);
  }
}

async function walk(dir: string, out: string[] = [], rel = ""): Promise<string[]> {
  try {
    for await (const x of Deno.readDir(join(dir, rel))) {
      const r = rel ? `${rel}/${x.name}` : x.name;
      out.push(r);
      if (x.isDirectory) await walk(dir, out, r);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

export const ARCHIVE_TARGETS: Target[] = [
  {
    name: "model-archives",
    group: "model archives",
    parser: "seedArchive (src/host/models/archive.ts) through seedModels: Admin-UI model archives",
    onBadInput:
      "integrity error (exit 4) naming the archive and the entry: absolute or `..` paths, " +
      "links out of the archive or out of their model folder, devices and FIFOs, bad gzip; the " +
      "archive is refused whole and its staging folder removed",
    property: "nothing is written outside the models and HF cache dirs; every installed link " +
      "resolves inside its own model folder; no staging folder is left; a refused archive installs " +
      "nothing",
    weight: 0.5,
    gen(rng) {
      const i = rng.int(LAYOUTS.length);
      const ents = decode(LAYOUTS[i].seed);
      for (let k = 0, n = 1 + rng.int(2); k < n; k++) mutateArchive(rng, ents);
      const tar = encode(ents);
      return new Uint8Array([i, ...(rng.chance(0.15) ? mutate(rng, tar, 1) : tar)]);
    },
    async check(input) {
      const layout = LAYOUTS[input[0] % LAYOUTS.length];
      const root = await Deno.makeTempDir({ prefix: "cit-fuzz-archive-" });
      const bundle = `${root}/bundle`;
      const models = `${root}/var/models`;
      const hf = `${root}/var/hf`;
      try {
        await Deno.mkdir(bundle);
        const gz = await gzip(input.subarray(1));
        await Deno.writeFile(join(bundle, layout.name), gz);
        const ctx = createContext({
          sink: { write: () => {}, isTTY: false },
          env: {},
          interactive: false,
          cwd: "/",
          execDir: "/",
        });
        let threw: unknown;
        try {
          const plan = await planModels([layout.source], {
            modelsDir: models,
            hfCacheDir: hf,
            bundleDir: bundle,
            expected: new Map([[layout.name, sha256(gz)]]),
          });
          await seedModels(ctx, plan);
        } catch (e) {
          threw = e;
        }
        // Nothing outside var/ and bundle/.
        const top = (await walk(root)).filter((p) => !p.includes("/"));
        prop(top.every((p) => p === "bundle" || p === "var"), `written outside: ${top.join(", ")}`);
        const installed = [
          ...(await walk(models)).map((p) => [models, p]),
          ...(await walk(hf)).map((p) => [hf, p]),
        ];
        for (const [base, p] of installed) {
          prop(
            !p.split("/").some((s) =>
              s.startsWith(".cortex-install-staging") || s.includes("staging")
            ),
            `staging left: ${p}`,
          );
          const st = await Deno.lstat(join(base, p));
          if (st.isSymlink) {
            const real = await Deno.realPath(join(base, p)).catch(() => undefined);
            const unit = join(await Deno.realPath(base), p.split("/")[0]);
            prop(
              real === undefined || real === unit || real.startsWith(unit + "/"),
              `link ${p} -> ${real}`,
            );
          }
          prop(!st.isBlockDevice && !st.isCharDevice && !st.isFifo, `device ${p}`);
        }
        if (threw !== undefined) {
          prop(
            installed.length === 0 || layout.root === "hf-cache",
            `refused archive left ${installed.map(([, p]) => p).join(", ")}`,
          );
          throw threw;
        }
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    },
  },
];
