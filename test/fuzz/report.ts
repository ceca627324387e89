/** Writes docs/RELIABILITY.md from a fuzz run (stub until the generator lands). */
import type { TargetResult } from "./run.ts";
export function writeReport(
  _r: { seed: number; count: number; results: TargetResult[]; seconds: number },
): Promise<string> {
  return Promise.resolve("");
}
