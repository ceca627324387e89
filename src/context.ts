/**
 * The run context: everything a step needs from the outside world comes in here, so a unit
 * test can swap it: the Docker seam (every docker and compose call), the clock and sleeps, the
 * environment, the doctor's probes. Only the CLI layer (src/cli/run.ts) builds a real one.
 */
import { Progress, type ProgressSink } from "./progress.ts";
import { type DockerRunner, processDocker } from "./docker.ts";
import { InterruptedError, printable } from "./errors.ts";
import type { DoctorDeps } from "./doctor/mod.ts";

export interface Logger {
  /** A normal line for people (stderr). */
  info(msg: string): void;
  warn(msg: string): void;
  /** Shown only with --verbose. */
  debug(msg: string): void;
}

export interface Context {
  log: Logger;
  progress: Progress;
  /** Every docker, `docker compose` and `docker-compose` call goes through it (the seam). */
  docker: DockerRunner;
  signal: AbortSignal;
  /** Environment lookup (never read Deno.env directly in steps). */
  env(key: string): string | undefined;
  /** The whole environment (compose interpolates from it). */
  envAll(): Record<string, string>;
  now(): Date;
  /**
   * Waits `ms` (polls, retries); rejects with InterruptedError at once when `signal` aborts.
   * Tests give one that returns at once and advances their clock.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * Replacements for the doctor's probes of the host (subprocesses such as df, nvidia-smi and ip,
   * network probes, port binds), so that an install runs in a unit test with no GPU or network.
   */
  doctorDeps?: Partial<DoctorDeps>;
  /** HTTP to the Cortex gateway's API (default the global `fetch`); tests give a fake gateway. */
  fetch?: typeof fetch;
  /** Working directory and the directory of the executable (or main.ts when run from source). */
  cwd: string;
  execDir: string;
  /** Whether stdin is an interactive terminal (prompts allowed). */
  interactive: boolean;
  json: boolean;
}

export interface ContextOptions {
  json?: boolean;
  verbose?: boolean;
  sink?: ProgressSink;
  signal?: AbortSignal;
  interactive?: boolean;
  env?: Record<string, string>;
  execDir?: string;
  cwd?: string;
  docker?: DockerRunner;
  now?: () => Date;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  doctorDeps?: Partial<DoctorDeps>;
  fetch?: typeof fetch;
}

/** The sink for stderr; TTY redraws only when stderr is a terminal and NO_COLOR is unset. */
export function stderrSink(): ProgressSink {
  const enc = new TextEncoder();
  return {
    write: (t) => {
      Deno.stderr.writeSync(enc.encode(t));
    },
    isTTY: Deno.stderr.isTerminal() && !Deno.env.get("NO_COLOR"),
  };
}

/** Builds a context; defaults are the real process's. */
export function createContext(o: ContextOptions = {}): Context {
  const sink = o.sink ?? stderrSink();
  const progress = new Progress(sink);
  const signal = o.signal ?? new AbortController().signal;
  const line = (prefix: string) => (msg: string) => {
    progress.clear();
    sink.write(`${prefix}${printable(msg, { keepNewlines: true })}\n`);
  };
  const env = o.env;
  return {
    log: {
      info: line(""),
      warn: line("warning: "),
      debug: o.verbose ? line("debug: ") : () => {},
    },
    progress,
    docker: o.docker ?? processDocker({ signal }),
    signal,
    env: (k) => env ? (Object.hasOwn(env, k) ? env[k] : undefined) : Deno.env.get(k),
    envAll: () => env ? { ...env } : Deno.env.toObject(),
    now: o.now ?? (() => new Date()),
    sleep: o.sleep ?? sleep,
    doctorDeps: o.doctorDeps,
    ...(o.fetch ? { fetch: o.fetch } : {}),
    cwd: o.cwd ?? Deno.cwd(),
    execDir: o.execDir ?? execDir(),
    interactive: o.interactive ?? Deno.stdin.isTerminal(),
    json: o.json ?? false,
  };
}

/**
 * The folder of the compiled executable, or of main.ts when run from source: the bundle and
 * Cortex dir are looked for beside it the same way in both cases.
 */
export function execDir(): string {
  const exe = Deno.execPath();
  const base = exe.split("/").pop() ?? "";
  if (/^deno(\.exe)?$/.test(base)) {
    return new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  }
  return exe.slice(0, exe.lastIndexOf("/")) || "/";
}

/** Sleeps `ms`, rejecting with InterruptedError at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((res, rej) => {
    if (signal?.aborted) return rej(new InterruptedError());
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      res();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      rej(new InterruptedError());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
