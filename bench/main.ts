/**
 * The benchmark suite (issue 11): every case measured as users run the program — whole processes,
 * page cache dropped before each run when root, engine state reset (only the suite's own images),
 * rounds interleaved with the baselines, medians and spread. Writes bench/RESULTS.md,
 * bench/results.json and bench/ratios.svg (with --quick: under bench/out/ unless --out).
 *
 *   deno task bench                        the full suite (about 15 minutes on 2 cores)
 *   deno task bench --quick                every case at a small size, once (CI: keeps it working)
 *   deno task bench --only load,upgrade    some cases
 *   deno task bench --compare REV          also measures `main.ts` of git revision REV
 *   deno task bench --rounds 5 --out DIR
 *   deno task bench --render               RESULTS.md and ratios.svg again from results.json
 *                                          (after editing bench/explanations.ts)
 *
 * Asserts no timing: missed targets are reported, not failed. Exit 1 only when a case broke.
 */
import { parseArgs } from "node:util";
import { CASES, type Env, EXTRA_CASES, FULL, QUICK } from "./lib/cases.ts";
import { isRoot, sh, tryRun } from "./lib/proc.ts";
import { removeLabelled } from "./lib/images.ts";
import { cacheState, type CaseResult, say } from "./lib/suite.ts";
import { ratiosSvg, type Results, resultsMarkdown } from "./lib/report.ts";
import { EXPLANATIONS } from "./explanations.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    only: { type: "string" },
    rounds: { type: "string" },
    out: { type: "string" },
    compare: { type: "string" },
    render: { type: "boolean" },
    help: { type: "boolean" },
  },
});
if (values.help) {
  console.log(
    "deno task bench [--quick] [--only CASE,...] [--rounds N] [--out DIR] [--compare REV] [--render]\n" +
      `cases: ${Object.keys(CASES).join(", ")}; with --only also: ${
        Object.keys(EXTRA_CASES).join(", ")
      }`,
  );
  Deno.exit(0);
}

if (values.render) {
  const dir = values.out ?? `${REPO}/bench`;
  const res: Results = JSON.parse(await Deno.readTextFile(`${dir}/results.json`));
  await Deno.writeTextFile(`${dir}/RESULTS.md`, resultsMarkdown(res, EXPLANATIONS) + "\n");
  await Deno.writeTextFile(`${dir}/ratios.svg`, ratiosSvg(res));
  say(`rendered ${dir}/RESULTS.md and ratios.svg from results.json`);
  Deno.exit(0);
}

const sizes = { ...(values.quick ? QUICK : FULL) };
if (values.rounds) sizes.rounds = Math.max(1, Number(values.rounds));
const only = values.only ? values.only.split(",").map((s) => s.trim()) : Object.keys(CASES);
const ALL = { ...CASES, ...EXTRA_CASES };
for (const o of only) {
  if (!(o in ALL)) {
    console.error(`Cannot run case "${o}": no such case. Cases: ${Object.keys(ALL).join(", ")}`);
    Deno.exit(2);
  }
}
const outDir = values.out ?? (values.quick ? `${REPO}/bench/out` : `${REPO}/bench`);

async function text(cmd: string[]): Promise<string> {
  try {
    return await sh(cmd);
  } catch {
    return "unknown";
  }
}

/** Writes results.json, RESULTS.md and ratios.svg of the cases so far (after every case). */
async function writeResults(final: boolean): Promise<Results> {
  const mem = Deno.systemMemoryInfo();
  const results: Results = {
    partial: final
      ? undefined
      : `${cases.length} of ${only.length} cases (the run is still going or was stopped)`,
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    quick: sizes.quick,
    rounds: sizes.rounds,
    machine: {
      cpus: navigator.hardwareConcurrency,
      memory: `${(mem.total / 1024 ** 3).toFixed(1)} GiB`,
      kernel: Deno.osRelease(),
      os: await text(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
      load: `${loadAtStart} at the start, ${
        Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
      } at the end`,
    },
    versions: {
      deno: Deno.version.deno,
      engine: await text(["docker", "version", "--format", "{{.Server.Version}}"]),
      storageDriver: await text(["docker", "info", "--format", "{{.Driver}}"]),
      cgroup: await text([
        "sh",
        "-c",
        "[ -e /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1",
      ]),
    },
    pageCache: !cacheState.enabled
      ? "not dropped (--quick)"
      : cacheState.failed === 0
      ? `dropped before each of ${cacheState.dropped} cold runs (sync; echo 3 > /proc/sys/vm/drop_caches)`
      : `NOT dropped for ${cacheState.failed} runs (not root): warm-cache figures`,
    seconds: (performance.now() - started) / 1000,
    cases,
  };
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(`${outDir}/results.json`, JSON.stringify(results, null, 2) + "\n");
  await Deno.writeTextFile(`${outDir}/RESULTS.md`, resultsMarkdown(results, EXPLANATIONS) + "\n");
  await Deno.writeTextFile(`${outDir}/ratios.svg`, ratiosSvg(results));
  return results;
}

const started = performance.now();
const loadAtStart = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
const label = `bn${crypto.randomUUID().slice(0, 8)}`;
const work = await Deno.makeTempDir({ prefix: `cit-bench-${label}-`, dir: "/var/tmp" });
cacheState.enabled = !sizes.quick;
const env: Env = { sizes, repo: REPO, work, label, memory: new Map() };
const cases: CaseResult[] = [];
let broken = 0;
try {
  if (values.compare) {
    const root = `${work}/compare`;
    await sh(["git", "-C", REPO, "worktree", "add", "--detach", root, values.compare]);
    env.compareRoot = root;
    env.compareRev = values.compare;
  }
  // Compile and cache the program's modules once, so no contender pays for it.
  await tryRun([Deno.execPath(), "run", "-A", `${REPO}/main.ts`, "--help"]);
  await tryRun([Deno.execPath(), "run", "-A", `${REPO}/bench/lib/seed.ts`, "--hash", "/dev/null"]);
  if (env.compareRoot) {
    await tryRun([Deno.execPath(), "run", "-A", `${env.compareRoot}/main.ts`, "--help"]);
  }
  if (!isRoot()) say("not root: the page cache is NOT dropped between runs; slow-media is skipped");
  for (const id of only) {
    say(`case ${id}`);
    const t0 = performance.now();
    try {
      const r = await ALL[id](env);
      cases.push({ ...r, seconds: (performance.now() - t0) / 1000 });
      for (const x of r.ratios) {
        say(
          `  ${id}: ${x.label}: ${x.value.toFixed(2)}${
            x.met === undefined ? "" : x.met ? " (met)" : " (MISSED)"
          }`,
        );
      }
      if (r.skipped) say(`  ${id} skipped: ${r.skipped}`);
    } catch (e) {
      broken++;
      const msg = (e as Error).stack ?? String(e);
      say(`  ${id} FAILED: ${msg}`);
      cases.push({
        id,
        title: id,
        contenders: [],
        ratios: [],
        notes: [],
        skipped: `failed: ${(e as Error).message.split("\n")[0]}`,
        seconds: (performance.now() - t0) / 1000,
      });
    }
    await writeResults(false);
  }
} finally {
  await removeLabelled(label);
  if (env.compareRoot) {
    await tryRun(["git", "-C", REPO, "worktree", "remove", "--force", env.compareRoot]);
  }
  await Deno.remove(work, { recursive: true }).catch(() => {});
}

const results = await writeResults(true);
say(
  `wrote ${outDir}/RESULTS.md, results.json, ratios.svg in ${
    (results.seconds / 60).toFixed(1)
  } min`,
);
Deno.exit(broken > 0 ? 1 : 0);
