/**
 * The benchmark runner: contenders of a case run as whole processes, page cache dropped before
 * each (when root), rounds interleaved (the order rotates every round so no contender always
 * follows the same one), medians and spread.
 */
import { dropCaches, type Timed, timed } from "./proc.ts";

/** One command measured in a case (ours or a baseline). */
export interface Contender {
  id: string;
  /** What it is, for the tables (`docker load -i` of every tar). */
  label: string;
  /** The process to time. */
  cmd: string[];
  /** Untimed: puts the engine and files back into the state this contender starts from. */
  prepare?: () => Promise<void>;
  /** Untimed: checks the run did what it should (throws otherwise). */
  check?: (t: Timed) => void | Promise<void>;
  /** Run inside these cgroup folders (slow-media's read throttle and memory cap). */
  cgroups?: string[];
  env?: Record<string, string>;
  /** Do not drop the page cache before this one (a warm re-run). */
  warm?: boolean;
}

/** Median, spread and every sample of one contender. */
export interface Measured {
  id: string;
  label: string;
  samples: number[];
  median: number;
  min: number;
  max: number;
  /** Peak RSS (bytes) over its runs, when measured. */
  peakRss?: number;
  /**
   * Median CPU seconds (user + system) of the process tree, when measured: the engine's own work
   * (dockerd) is not in it. Unlike wall time it hardly moves with the machine's load.
   */
  cpu?: number;
}

/** A ratio the results report, with its target when the issue sets one. */
export interface Ratio {
  id: string;
  /** How it reads: `ours vs docker load -i (floor)`. */
  label: string;
  value: number;
  /** `faster`: baseline / ours (more is better); `time`: ours / baseline (less is better). */
  kind: "faster" | "time" | "seconds" | "MB";
  target?: { op: ">=" | "<=" | "<"; value: number };
  met?: boolean;
}

/** The result of one case. */
export interface CaseResult {
  id: string;
  title: string;
  contenders: Measured[];
  ratios: Ratio[];
  /** Facts and caveats (sizes, what could not be done). */
  notes: string[];
  /** Set when the case could not run at all (why). */
  skipped?: string;
  seconds: number;
}

/** The median of the samples (NaN for none). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Whether a value meets a target. */
export function meets(value: number, t: { op: ">=" | "<=" | "<"; value: number }): boolean {
  return t.op === ">=" ? value >= t.value : t.op === "<=" ? value <= t.value : value < t.value;
}

/** A ratio with `met` filled in. */
export function ratio(
  id: string,
  label: string,
  value: number,
  kind: Ratio["kind"],
  target?: Ratio["target"],
): Ratio {
  return { id, label, value, kind, target, met: target ? meets(value, target) : undefined };
}

/**
 * Page-cache drops of this run: `enabled` false under --quick (sizes too small to matter, and a
 * cold cache costs the CI seconds); counts of drops that worked and failed (not root).
 */
export const cacheState = { enabled: true, dropped: 0, failed: 0 };

/** Logs a progress line on stderr. */
export function say(msg: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/**
 * Runs `rounds` interleaved rounds of the contenders; returns their measurements. A failing run
 * throws with the command's stderr.
 */
export async function runRounds(contenders: Contender[], rounds: number): Promise<Measured[]> {
  const samples = new Map<string, number[]>(contenders.map((c) => [c.id, []]));
  const rss = new Map<string, number>();
  const cpu = new Map<string, number[]>(contenders.map((c) => [c.id, []]));
  for (let r = 0; r < rounds; r++) {
    const order = contenders.map((_, i) => contenders[(i + r) % contenders.length]);
    for (const c of order) {
      await c.prepare?.();
      if (!c.warm && cacheState.enabled) {
        if (await dropCaches()) cacheState.dropped++;
        else cacheState.failed++;
      }
      const t = await timed(c.cmd, { cgroups: c.cgroups, env: c.env });
      if (t.code !== 0) {
        throw new Error(
          `${c.label}: exit ${t.code}: ${
            (t.stderr || t.stdout).trim().split("\n").slice(-5).join("\n")
          }`,
        );
      }
      await c.check?.(t);
      samples.get(c.id)!.push(t.seconds);
      if (t.peakRss !== undefined) rss.set(c.id, Math.max(rss.get(c.id) ?? 0, t.peakRss));
      if (t.cpu !== undefined) cpu.get(c.id)!.push(t.cpu);
      say(`  round ${r + 1}/${rounds} ${c.label}: ${t.seconds.toFixed(2)} s`);
    }
  }
  return contenders.map((c) => {
    const s = samples.get(c.id)!;
    return {
      id: c.id,
      label: c.label,
      samples: s,
      median: median(s),
      min: Math.min(...s),
      max: Math.max(...s),
      peakRss: rss.get(c.id),
      cpu: cpu.get(c.id)!.length ? median(cpu.get(c.id)!) : undefined,
    };
  });
}

/** The measurement of `id` among `ms` (throws when absent: a bug in a case). */
export function pick(ms: Measured[], id: string): Measured {
  const m = ms.find((x) => x.id === id);
  if (!m) throw new Error(`no measurement "${id}"`);
  return m;
}
