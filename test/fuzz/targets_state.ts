/**
 * Fuzz targets: cortex-install's own state (the journal and the audit log, which a crash, a full
 * disk or a hand edit may damage), the tail check of a database dump, and Cortex's HTTP answers
 * (scan, status) as src/host/cortex_api.ts parses them.
 */
import {
  currentRelease,
  emptyJournal,
  JournalSchema,
  previousRelease,
  readJournal,
} from "../../src/state/journal.ts";
import { readAudit } from "../../src/state/audit.ts";
import { tailShowsComplete } from "../../src/host/sqldump.ts";
import { CortexSession, getJob, modelOutcomes, scanBundle } from "../../src/host/cortex_api.ts";
import { bytes, mutate, mutateJson, prop, type Rng, type Target, utf8 } from "./harness.ts";

const H = "a".repeat(64);
const JOURNAL = JSON.stringify(
  {
    ...emptyJournal(),
    releases: [
      {
        release: "0.1.1",
        bundleDigest: `sha256:${H}`,
        bundleDir: "/media/usb/bundle",
        installedAt: "2026-09-10T08:00:00Z",
        engineRefs: { vllm: "vllm/vllm-openai:v0.6.3" },
        images: { "postgres:16": `sha256:${H}` },
        envFiles: {},
        outcome: "installed",
      },
      {
        release: "0.2.0",
        bundleDigest: `sha256:${"b".repeat(64)}`,
        bundleDir: "/media/usb/bundle2",
        installedAt: "2026-09-11T08:00:00Z",
        engineRefs: {},
        images: {},
        envFiles: {},
        outcome: "failed",
      },
    ],
    current: 0,
    artifacts: {},
    loaded: { "postgres:16": `sha256:${H}` },
    models: { "/var/cortex/models/a": { files: 3, bytes: 12, sha256Tree: H } },
  },
  null,
  2,
);
JournalSchema.parse(JSON.parse(JOURNAL)); // the seed is a valid journal

const AUDIT_LINE = JSON.stringify({
  time: "2026-09-10T08:00:00Z",
  user: "root",
  command: ["install", "--bundle", "/media/usb", "--admin-password", "***"],
  artifacts: [{ path: "images/postgres.tar", verdict: "ok", sha256: H }],
  outcome: "ok",
  exitCode: 0,
  durationMs: 1200,
});

const SCAN = JSON.stringify({
  models: [{
    served_model_name: "qwen",
    name: "Qwen",
    files_present_on_host: true,
    already_registered: false,
  }],
  checksums: { verified: true, ok: 3, bad: 0, missing: 0 },
});
const STATUS = JSON.stringify({
  job: {
    id: 7,
    status: "completed",
    artifacts: [{ served_model_name: "qwen", type: "model", status: "imported", model_id: 3 }],
  },
});

async function withStateDir<T>(
  files: Record<string, Uint8Array>,
  f: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "cit-fuzz-state-" });
  try {
    for (const [n, b] of Object.entries(files)) await Deno.writeFile(`${dir}/${n}`, b);
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A fake fetch answering every request with `body` and status 200. */
const answering = (body: Uint8Array): typeof fetch => () =>
  Promise.resolve(
    new Response(body as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: { "content-type": "application/json" },
    }),
  );

export const STATE_TARGETS: Target[] = [
  {
    name: "journal",
    group: "state and Cortex answers",
    parser: "readJournal (src/state/journal.ts): the state dir's journal.json",
    onBadInput: "preflight error (exit 3) naming the file, with a hint to move it aside",
    property: "an accepted journal's `current` indexes a release; currentRelease and " +
      "previousRelease return releases of the journal or nothing",
    gen: (rng: Rng) =>
      rng.chance(0.75) ? mutateJson(rng, bytes(JOURNAL)) : mutate(rng, bytes(JOURNAL)),
    async check(input) {
      await withStateDir({ "journal.json": input }, async (dir) => {
        const j = await readJournal(dir);
        const cur = currentRelease(j);
        prop(
          j.current === undefined || cur !== undefined,
          `current ${j.current} of ${j.releases.length}`,
        );
        const prev = previousRelease(j);
        prop(prev === undefined || j.releases[prev.index] === prev.release, "previous release");
      });
    },
  },
  {
    name: "audit",
    group: "state and Cortex answers",
    parser: "readAudit (src/state/audit.ts): the append-only audit.log",
    onBadInput:
      "a line that is not a valid entry is counted (badLines) and skipped; never an exception",
    property: "never throws for any content; entries + bad lines never exceed the lines",
    gen(rng) {
      const lines = Array.from({ length: 1 + rng.int(4) }, () => AUDIT_LINE);
      const i = rng.int(lines.length);
      lines[i] = utf8(
        rng.chance(0.5) ? mutateJson(rng, bytes(lines[i])) : mutate(rng, bytes(lines[i])),
      );
      return bytes(lines.join("\n") + (rng.chance(0.8) ? "\n" : ""));
    },
    async check(input) {
      await withStateDir({ "audit.log": input }, async (dir) => {
        const r = await readAudit(dir);
        const n = utf8(input).split("\n").filter((l) => l.trim() !== "").length;
        prop(r.entries.length + r.badLines === n, `${r.entries.length} + ${r.badLines} != ${n}`);
      });
    },
  },
  {
    name: "sqldump-tail",
    group: "state and Cortex answers",
    parser: "tailShowsComplete (src/host/sqldump.ts): is a database dump complete?",
    onBadInput: "a dump without pg_dump's closing line is refused before a restore",
    property: "never throws; a tail without the closing line is never complete",
    gen: (rng) =>
      mutate(rng, bytes("SELECT 1;\n--\n-- PostgreSQL database dump complete\n--\n\n"), 3),
    check(input) {
      const ok = tailShowsComplete(input);
      if (!utf8(input).includes("PostgreSQL database dump complete")) {
        prop(!ok, "complete without the line");
      }
    },
  },
  {
    name: "cortex-api",
    group: "state and Cortex answers",
    parser: "scanBundle / getJob / modelOutcomes (src/host/cortex_api.ts): Cortex's HTTP answers",
    onBadInput: 'an error naming what was asked ("Cortex answered something that is not JSON", ' +
      '"an unexpected shape")',
    property: "scan models have string names; a job's outcomes name a model each",
    gen(rng) {
      const which = rng.int(2);
      const seed = bytes(which === 0 ? SCAN : STATUS);
      return new Uint8Array([
        which,
        ...(rng.chance(0.75) ? mutateJson(rng, seed) : mutate(rng, seed)),
      ]);
    },
    async check(input) {
      const o = { baseUrl: "http://127.0.0.1:1", fetch: answering(input.slice(1)) };
      const session = new CortexSession("cortex_session=x", { username: "admin" });
      if (input[0] % 2 === 0) {
        const r = await scanBundle(o, session, "/bundles/b");
        for (const m of r.models) prop(typeof m.served_model_name === "string", "model name");
      } else {
        const job = await getJob(o, session);
        if (job) {
          for (const x of modelOutcomes(job)) {
            prop(typeof x === "object" && x !== null, "outcome");
          }
        }
      }
    },
  },
];
