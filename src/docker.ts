/**
 * The Docker seam: every call of the `docker` CLI, `docker compose` (v2) and the standalone
 * `docker-compose` (v1) made by the program goes through one `DockerRunner`, reachable from the
 * context as `ctx.docker` (as dax's `build$` injects its shell). The real one spawns the CLIs
 * (they respect DOCKER_HOST and the user's docker config); unit tests put a scripted one in its
 * place (test/support/scripted_docker.ts) that answers from a script and records every call.
 * The helpers below (inspect, tag, remove, compose detection) all take the runner.
 */
import { dockerError } from "./errors.ts";

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
  stdin?: StdinFeed;
  /** Added to the runner's environment for this call. */
  env?: Record<string, string>;
  cwd?: string;
  /**
   * Aborts (SIGTERM) the call; default: the runner's signal (the context's). `null`: the call is
   * not abortable, for the cleanup that must run after an interrupt.
   */
  signal?: AbortSignal | null;
}

/** Runs one docker or compose command and collects its output; never throws for a non-zero exit. */
export interface DockerRunner {
  run(args: string[], opts?: DockerCallOptions): Promise<RunResult>;
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
  return {
    run: (args, c = {}) =>
      runCommand(c.cli === "docker-compose" ? "docker-compose" : o.bin ?? "docker", args, {
        stdin: c.stdin,
        env: o.env || c.env ? { ...o.env, ...c.env } : undefined,
        cwd: c.cwd,
        signal: c.signal === null ? undefined : c.signal ?? o.signal,
      }),
  };
}

/**
 * The real docker CLI without a context: for tests, fixtures and benchmarks that prepare or
 * inspect the engine themselves. The program goes through `ctx.docker` (test/seam_test.ts checks).
 */
export async function runDocker(
  args: string[],
  opts: {
    bin?: string;
    signal?: AbortSignal;
    stdin?: StdinFeed;
    env?: Record<string, string>;
    cwd?: string;
  } = {},
): Promise<RunResult> {
  return await runCommand(opts.bin ?? "docker", args, opts);
}

/** Runs any command and collects its output; a missing binary gives code 127. */
export async function runCommand(
  bin: string,
  args: string[],
  opts: { signal?: AbortSignal; stdin?: StdinFeed; env?: Record<string, string>; cwd?: string } =
    {},
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
    : stdin.pipeTo(child.stdin).catch(() => {});
  // The output is collected whatever the feeder does; its error is raised once the process ended.
  const [out, fed] = await Promise.allSettled([child.output(), feeding]);
  if (out.status === "rejected") throw out.reason;
  if (fed.status === "rejected") throw fed.reason;
  const dec = new TextDecoder();
  return {
    code: out.value.code,
    stdout: dec.decode(out.value.stdout),
    stderr: dec.decode(out.value.stderr),
  };
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
