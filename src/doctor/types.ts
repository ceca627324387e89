/** Shapes shared by the doctor's checks. */
import type { RunResult } from "../docker.ts";

/** One line of the doctor's verdict. */
export interface Check {
  /** Stable id, e.g. "docker.daemon", "disk", "gpu.cuda". */
  id: string;
  title: string;
  status: "ok" | "warn" | "fail";
  detail: string;
  hint?: string;
}

/** Runs a command and collects its output; a missing binary gives code 127. Never throws. */
export type Run = (
  cmd: string,
  args: string[],
  opts?: { timeoutMs?: number },
) => Promise<RunResult>;

export type { RunResult };
