/** Runs fuzz targets: the loop shared by `deno task fuzz`, the CI short form and the report. */
import {
  DEFAULT_SEED,
  type Outcome,
  Rng,
  runCase,
  saveRegression,
  type Target,
} from "./harness.ts";

/** What one target did. */
export interface TargetResult {
  name: string;
  group: string;
  parser: string;
  onBadInput: string;
  property: string;
  cases: number;
  accepted: number;
  refused: number;
  failed: number;
  maxMs: number;
  totalMs: number;
  failures: { why: string; saved?: string }[];
}

export interface RunOptions {
  seed?: number;
  /** Cases per target (times the target's weight). */
  count: number;
  /** Save failing cases under test/fuzz-regressions/ (default true). */
  save?: boolean;
  /** Called after each target. */
  onTarget?: (r: TargetResult) => void;
}

/** Runs each target `count × weight` times from the seed; never throws for a failing case. */
export async function runTargets(targets: Target[], o: RunOptions): Promise<TargetResult[]> {
  const root = new Rng(o.seed ?? DEFAULT_SEED);
  const out: TargetResult[] = [];
  const set = new Set<() => Promise<void>>();
  try {
    for (const t of targets) {
      const rng = root.fork(t.name);
      if (t.setup && !set.has(t.setup)) {
        await t.setup();
        set.add(t.setup);
      }
      const n = Math.max(1, Math.round(o.count * (t.weight ?? 1)));
      const r: TargetResult = {
        name: t.name,
        group: t.group,
        parser: t.parser,
        onBadInput: t.onBadInput,
        property: t.property,
        cases: 0,
        accepted: 0,
        refused: 0,
        failed: 0,
        maxMs: 0,
        totalMs: 0,
        failures: [],
      };
      for (let i = 0; i < n; i++) {
        const input = await t.gen(rng);
        const res: Outcome = await runCase(t, input);
        r.cases++;
        r.maxMs = Math.max(r.maxMs, res.ms);
        r.totalMs += res.ms;
        if (res.ok) {
          if (res.refused) r.refused++;
          else r.accepted++;
        } else {
          r.failed++;
          const saved = o.save === false ? undefined : await saveRegression(t.name, input);
          if (r.failures.length < 5) r.failures.push({ why: res.why.slice(0, 400), saved });
        }
      }
      o.onTarget?.(r);
      out.push(r);
    }
  } finally {
    for (const t of targets) await t.teardown?.();
  }
  return out;
}
