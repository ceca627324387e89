/**
 * The Docker seam: every call of the `docker` CLI, `docker compose` (v2) and the standalone
 * `docker-compose` (v1) made by the program goes through one `DockerRunner`, reachable from the
 * context as `ctx.docker` (as dax's `build$` injects its shell). The real one spawns the CLIs
 * (they respect DOCKER_HOST and the user's docker config); unit tests put a scripted one in its
 * place (test/support/scripted_docker.ts) that answers from a script and records every call.
 * The helpers below (inspect, tag, remove, compose detection) all take the runner.
 */
import { dockerError } from "./errors.ts";
import { apiLoad, engineSocket } from "./images/engine_api.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Which CLI a call runs: the docker CLI (also `docker compose`), or the standalone Compose v1. */
export type DockerCli = "docker" | "docker-compose";

/**
 * What a process reads on stdin: a stream piped in, or a function given the process's stdin that
 * writes it (and closes or aborts it) itself: `docker load` is fed that way from the hashing read
 * of a tar, so each chunk is hashed and written in one pass with no copy.
 */
export type StdinFeed =
  | ReadableStream<Uint8Array>
  | ((stdin: WritableStream<Uint8Array>) => Promise<void>);

export interface DockerCallOptions {
  /** Default "docker". */
  cli?: DockerCli;
  /**
   * What the process reads; a stream's own error (other than the child closing its stdin early,
   * which its exit code tells) is raised once the process has ended.
   */
  stdin?: StdinFeed;
  /**
   * The process's stdout is piped here (with backpressure) instead of being collected: the
   * result's `stdout` is then "". The runner does not close it. When a write fails (disk full),
   * the process's stdout is cancelled (it gets SIGPIPE on its next write) and the call rejects
   * with that write error once the process has exited. `pg_dump` into a backup file is fed so.
   */
  stdout?: WritableStream<Uint8Array>;
  /**
   * Added to the runner's environment for this call. Also the way to pass a secret: `docker exec
   * -e NAME` (no `=value`) takes the value from the CLI's environment, so it never shows in argv.
   */
  env?: Record<string, string>;
  cwd?: string;
  /**
   * Aborts (SIGTERM) the call; default: the runner's signal (the context's). `null`: the call is
   * not abortable, for the cleanup that must run after an interrupt.
   */
  signal?: AbortSignal | null;
}

/**
 * Runs one docker or compose command and collects its output (stderr may be cut to its last
 * 64 KiB: the messages that matter come last); never throws for a non-zero exit, a missing binary
 * is code 127. It rejects only for what is not the command's own result: a stdin feed or stdout
 * sink that failed (see DockerCallOptions).
 */
export interface DockerRunner {
  run(args: string[], opts?: DockerCallOptions): Promise<RunResult>;
  /**
   * `docker load` of the tar that `feed` writes, through the engine's API socket (no CLI process
   * in between: src/images/engine_api.ts). Optional: a runner without it (the scripted ones of the
   * unit tests) gets `run(["load"], { stdin: feed })`, and the real one falls back to that itself
   * when it cannot reach the socket. Same result shape as the CLI's.
   */
  loadImage?(feed: StdinFeed, opts?: { signal?: AbortSignal }): Promise<RunResult>;
}

export interface ProcessDockerOptions {
  /** The docker binary; default `docker` on PATH. */
  bin?: string;
  /** Environment added to every call (e.g. DOCKER_HOST). */
  env?: Record<string, string>;
  /** The default abort signal of every call. */
  signal?: AbortSignal;
}

/** The real runner: spawns `docker` (or `docker-compose`); a missing binary gives code 127. */
export function processDocker(o: ProcessDockerOptions = {}): DockerRunner {
  const run: DockerRunner["run"] = (args, c = {}) =>
    runCommand(c.cli === "docker-compose" ? "docker-compose" : o.bin ?? "docker", args, {
      stdin: c.stdin,
      stdout: c.stdout,
      env: o.env || c.env ? { ...o.env, ...c.env } : undefined,
      cwd: c.cwd,
      signal: c.signal === null ? undefined : c.signal ?? o.signal,
    });
  return {
    run,
    loadImage: async (feed, c = {}) => {
      const signal = c.signal ?? o.signal;
      // A custom CLI binary (tests) or an engine the CLI reaches some other way: the CLI.
      const socket = o.bin || Deno.env.get("CORTEX_INSTALL_LOAD_CLI")
        ? undefined
        : engineSocket((n) => o.env?.[n] ?? Deno.env.get(n));
      const r = socket ? await apiLoad(socket, feed, signal) : undefined;
      return r ?? await run(["load"], { stdin: feed, signal });
    },
  };
}

/**
 * The real docker CLI without a context: for tests, fixtures and benchmarks that prepare or
 * inspect the engine themselves. The program goes through `ctx.docker` (test/seam_test.ts checks).
 */
export async function runDocker(
  args: string[],
  opts: CommandOptions & { bin?: string } = {},
): Promise<RunResult> {
  return await runCommand(opts.bin ?? "docker", args, opts);
}

/** Options of `runCommand` (see DockerCallOptions for stdin, stdout and env). */
export interface CommandOptions {
  signal?: AbortSignal;
  stdin?: StdinFeed;
  stdout?: WritableStream<Uint8Array>;
  env?: Record<string, string>;
  cwd?: string;
}

/** Most of a command's stderr kept (its end). */
const STDERR_KEEP = 64 * 1024;

/**
 * Runs any command and collects its output; a missing binary gives code 127. Streams stdin from
 * `stdin` and stdout to `stdout` when given (see DockerCallOptions), keeps the last 64 KiB of stderr.
 */
export async function runCommand(
  bin: string,
  args: string[],
  opts: CommandOptions = {},
): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(bin, {
      args,
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
      cwd: opts.cwd,
      signal: opts.signal,
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${bin}: command not found` };
    }
    throw e;
  }
  const stdin = opts.stdin;
  const feeding = !stdin
    ? Promise.resolve()
    : typeof stdin === "function"
    ? stdin(child.stdin)
    : feedStream(stdin, child.stdin);
  let stdoutError: unknown;
  const collecting: Promise<string> = opts.stdout
    ? child.stdout.pipeTo(opts.stdout, { preventClose: true }).then(
      () => "",
      (e) => {
        stdoutError = e;
        return "";
      },
    )
    : new Response(child.stdout).text();
  // The output is collected whatever the feeder does; its error is raised once the process ended.
  const [out, err, status, fed] = await Promise.allSettled([
    collecting,
    tailText(child.stderr, STDERR_KEEP),
    child.status,
    feeding,
  ]);
  if (status.status === "rejected") throw status.reason;
  if (out.status === "rejected") throw out.reason;
  if (stdoutError) throw stdoutError;
  if (fed.status === "rejected") throw fed.reason;
  return {
    code: status.value.code,
    stdout: out.value,
    stderr: err.status === "fulfilled" ? err.value : "",
  };
}

/**
 * Copies a stream into a process's stdin. A write that fails means the process closed its stdin
 * (psql stopping on an error, a killed process): its exit code tells, so that is no error here and
 * the source is cancelled. A failing source (a file that cannot be read) aborts the process's stdin
 * (it sees the end of its input) and is raised.
 */
async function feedStream(
  src: ReadableStream<Uint8Array>,
  dst: WritableStream<Uint8Array>,
): Promise<void> {
  const reader = src.getReader();
  const writer = dst.getWriter();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      try {
        await writer.write(value);
      } catch {
        await reader.cancel().catch(() => {});
        return;
      }
    }
  } catch (e) {
    await writer.abort(e).catch(() => {});
    throw e;
  }
  await writer.close().catch(() => {});
}

/** The end of a byte stream as text, at most `keep` bytes (earlier bytes are dropped as read). */
async function tailText(stream: ReadableStream<Uint8Array>, keep: number): Promise<string> {
  let buf = new Uint8Array(0);
  for await (const chunk of stream) {
    const merged = new Uint8Array(Math.min(keep, buf.length + chunk.length));
    const fromChunk = Math.min(chunk.length, merged.length);
    const fromBuf = merged.length - fromChunk;
    merged.set(buf.subarray(buf.length - fromBuf), 0);
    merged.set(chunk.subarray(chunk.length - fromChunk), fromBuf);
    buf = merged;
  }
  return new TextDecoder().decode(buf);
}

/** The last `n` non-empty lines of a command's output, for error messages. */
export function tail(text: string, n = 15): string {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  return lines.slice(-n).join("\n");
}

/** What `docker image inspect` tells about one image. */
export interface ImageInfo {
  id: string;
  repoTags: string[];
  size: number;
  layers: string[];
  env: string[];
}

/**
 * Inspects images by ref or ID. Refs that do not exist are simply absent from the result
 * (keyed by the ref as asked).
 */
export async function inspectImages(
  docker: DockerRunner,
  refs: string[],
): Promise<Map<string, ImageInfo>> {
  const found = new Map<string, ImageInfo>();
  if (refs.length === 0) return found;
  // One call per ref: `docker image inspect a b` fails as a whole when one is missing.
  await Promise.all(refs.map(async (ref) => {
    const r = await docker.run(["image", "inspect", "--format", "{{json .}}", ref]);
    if (r.code !== 0) return;
    // deno-lint-ignore no-explicit-any
    const j = JSON.parse(r.stdout) as any;
    found.set(ref, {
      id: j.Id,
      repoTags: j.RepoTags ?? [],
      size: j.Size ?? 0,
      layers: j.RootFS?.Layers ?? [],
      env: j.Config?.Env ?? [],
    });
  }));
  return found;
}

/** `docker tag SRC DST`; throws a Docker error naming both. */
export async function tagImage(docker: DockerRunner, src: string, dst: string): Promise<void> {
  const r = await docker.run(["tag", src, dst]);
  if (r.code !== 0) {
    throw dockerError("retag", `Cannot tag "${src}" as "${dst}"`, undefined, tail(r.stderr));
  }
}

/**
 * `docker rmi --no-prune` on each ref/ID; failures are returned, not thrown. Not abortable: it
 * is the cleanup of a failed or interrupted load.
 */
export async function removeImages(docker: DockerRunner, refs: string[]): Promise<string[]> {
  const failed: string[] = [];
  for (const ref of refs) {
    const r = await docker.run(["rmi", "--no-prune", ref], { signal: null });
    if (r.code !== 0 && !/No such image/i.test(r.stderr)) failed.push(ref);
  }
  return failed;
}

/** Which compose CLI this host has: `docker compose` (v2) first, then `docker-compose` (v1). */
export interface ComposeCli {
  /** The command as people type it: `["docker", "compose"]` or `["docker-compose"]`. */
  cmd: string[];
  version: string;
  major: 1 | 2;
}

/**
 * Which compose to use (`--compose`): `v2` (the `docker compose` plugin, or a standalone
 * `docker-compose` of version 2), `v1` (the standalone `docker-compose` 1.x), or `auto` (v2 when
 * it runs, else whichever `docker-compose` is there).
 */
export type ComposeChoice = "v1" | "v2" | "auto";
export const COMPOSE_CHOICES: readonly ComposeChoice[] = ["auto", "v2", "v1"];

/**
 * Finds the compose CLI the choice asks for (see ComposeChoice); undefined when it does not run
 * (a `v1` request is not met by a standalone `docker-compose` of version 2, and vice versa).
 */
export async function detectCompose(
  docker: DockerRunner,
  want: ComposeChoice = "auto",
): Promise<ComposeCli | undefined> {
  if (want !== "v1") {
    const v2 = await docker.run(["compose", "version", "--short"]);
    if (v2.code === 0 && v2.stdout.trim()) {
      const version = v2.stdout.trim().replace(/^v/, "");
      return { cmd: ["docker", "compose"], version, major: 2 };
    }
  }
  const v1 = await docker.run(["version", "--short"], { cli: "docker-compose" });
  if (v1.code === 0 && v1.stdout.trim()) {
    const version = v1.stdout.trim().replace(/^v/, "");
    const major = version.startsWith("1.") ? 1 : 2;
    if (want === "auto" || (want === "v1") === (major === 1)) {
      return { cmd: ["docker-compose"], version, major };
    }
  }
  return undefined;
}
