/** Timing for the benchmarks: each run is printed on stderr as it ends and kept for the summary. */
export function stopwatch(width: number) {
  const rows: [string, number][] = [];
  /** Runs `fn`, records and prints its wall time; returns the seconds. */
  async function time(name: string, fn: () => Promise<unknown>): Promise<number> {
    const t = performance.now();
    await fn();
    const s = (performance.now() - t) / 1000;
    rows.push([name, s]);
    console.error(`${name.padEnd(width)} ${s.toFixed(2)} s`);
    return s;
  }
  /** The summary lines. */
  const summary = () => rows.map(([n, s]) => `  ${n.padEnd(width)} ${s.toFixed(2)} s`);
  return { rows, time, summary };
}
