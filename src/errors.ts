/**
 * The few error kinds of cortex-install, each with a fixed exit code.
 * Anything else thrown is a bug and is printed with its stack trace.
 */

/** Exit codes, documented in README.md and in `--help` (EXIT_CODES_HELP). */
export const ExitCode = {
  Ok: 0,
  Usage: 2,
  /** Preflight failed: nothing was changed. */
  Preflight: 3,
  Integrity: 4,
  Docker: 5,
  Stack: 6,
  /**
   * The run failed after it had started changing the host (a write failed, a file changed under
   * us): what was done is in the journal; fix the cause and re-run to resume.
   */
  Partial: 7,
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
  | "wheels"
  | "settings"
  | "stack"
  | "state"
  | "rollback"
  | "database"
  | "register";

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
export const partialError = (step: Step, msg: string, hint?: string, detail?: string) =>
  new InstallError(step, msg, ExitCode.Partial, hint, detail);

/** Throws InterruptedError when the signal was aborted: the one abort check, between units of work. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError();
}

/**
 * The error to raise for `e` caught during work that `signal` may have aborted: the interruption
 * itself when it did (and `e` is not one of our errors), else `e`.
 */
export function asInterrupted(e: unknown, signal: AbortSignal | undefined): unknown {
  return signal?.aborted && !(e instanceof InstallError) ? new InterruptedError() : e;
}
