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

/**
 * A name from a file or folder (a bundle path, an image name) made safe to print on one line:
 * control characters (newline, CR, ESC, DEL, C1), line and paragraph separators and bidi
 * overrides become `\n`, `\r`, `\t` or `\u{…}` escapes, and a backslash is doubled, so a crafted
 * name can neither forge output lines nor move the cursor. Other text is unchanged.
 */
export function printable(s: string, opts: { keepNewlines?: boolean } = {}): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    if (c === "\n" && opts.keepNewlines) return c;
    if (c === "\\") return opts.keepNewlines ? c : "\\\\";
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\u{${c.codePointAt(0)!.toString(16)}}`;
  });
}
