/**
 * The few error kinds of cortex-install, each with a fixed exit code.
 * Anything else thrown is a bug and is printed with its stack trace.
 */

/** Exit codes, documented in README.md. */
export const ExitCode = {
  Ok: 0,
  Usage: 2,
  Preflight: 3,
  Integrity: 4,
  Docker: 5,
  Stack: 6,
  Interrupted: 130,
} as const;
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

/** Bad flags or arguments (exit 2). */
export class UsageError extends Error {
  readonly exitCode = ExitCode.Usage;
  constructor(message: string, readonly hint?: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type Step =
  | "bundle"
  | "preflight"
  | "verify"
  | "load"
  | "retag"
  | "models"
  | "settings"
  | "stack"
  | "state"
  | "rollback"
  | "database";

/**
 * A failure of one install step, with what to do about it.
 * Message style: `Cannot load image "postgres-16.tar": sha256 is 3f2a…, the bundle lists 9c1d…`.
 */
export class InstallError extends Error {
  constructor(
    readonly step: Step,
    message: string,
    readonly exitCode: ExitCode,
    readonly hint?: string,
    /** Extra lines shown under the message, e.g. the end of Docker's output. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = "InstallError";
  }
}

/** The user or the system interrupted the run (SIGINT/SIGTERM); exit 130 after cleanup. */
export class InterruptedError extends Error {
  readonly exitCode = ExitCode.Interrupted;
  constructor(message = "Interrupted") {
    super(message);
    this.name = "InterruptedError";
  }
}

/** Shorthand constructors for the common kinds. */
export const preflightError = (step: Step, msg: string, hint?: string, detail?: string) =>
  new InstallError(step, msg, ExitCode.Preflight, hint, detail);
export const integrityError = (msg: string, hint?: string, detail?: string) =>
  new InstallError("verify", msg, ExitCode.Integrity, hint, detail);
export const dockerError = (step: Step, msg: string, hint?: string, detail?: string) =>
  new InstallError(step, msg, ExitCode.Docker, hint, detail);
export const stackError = (msg: string, hint?: string, detail?: string) =>
  new InstallError("stack", msg, ExitCode.Stack, hint, detail);

/** Throws InterruptedError when the signal was aborted. Call between units of work. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError();
}
