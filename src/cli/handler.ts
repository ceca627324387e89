/** What a command handler is and hands back to the CLI layer (run.ts prints it). */
import type { Context } from "../context.ts";
import type { Parsed } from "./flags.ts";

/** What a command hands back to the CLI layer. */
export interface CommandOutcome {
  exitCode: number;
  /** The JSON report (printed with --json). */
  report: Record<string, unknown>;
  /** Human-readable summary (printed on stdout without --json). */
  human: string;
}

/** One command: the context and the parsed flags in, the outcome out. */
export type CommandHandler = (ctx: Context, flags: Parsed["values"]) => Promise<CommandOutcome>;
