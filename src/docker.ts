/**
 * A thin wrapper over the `docker` CLI (it respects DOCKER_HOST and the user's docker config).
 * Every call goes through `runDocker`, so tests and the journal can count and fake them.
 */
import { dockerError } from "./errors.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface DockerOptions {
  /** The docker binary; default `docker` on PATH. */
  bin?: string;
  signal?: AbortSignal;
  stdin?: ReadableStream<Uint8Array>;
  env?: Record<string, string>;
  cwd?: string;
}

/** Runs `docker ...args` and collects its output. Never throws for a non-zero exit. */
export async function runDocker(args: string[], opts: DockerOptions = {}): Promise<RunResult> {
  return await runCommand(opts.bin ?? "docker", args, opts);
}

/** Runs any command and collects its output; a missing binary gives code 127. */
export async function runCommand(
  bin: string,
  args: string[],
  opts: Omit<DockerOptions, "bin"> = {},
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
  const feeding = opts.stdin ? opts.stdin.pipeTo(child.stdin).catch(() => {}) : Promise.resolve();
  const [out] = await Promise.all([child.output(), feeding]);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
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
  refs: string[],
  opts: DockerOptions = {},
): Promise<Map<string, ImageInfo>> {
  const found = new Map<string, ImageInfo>();
  if (refs.length === 0) return found;
  // One call per ref: `docker image inspect a b` fails as a whole when one is missing.
  await Promise.all(refs.map(async (ref) => {
    const r = await runDocker(["image", "inspect", "--format", "{{json .}}", ref], opts);
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
export async function tagImage(src: string, dst: string, opts: DockerOptions = {}): Promise<void> {
  const r = await runDocker(["tag", src, dst], opts);
  if (r.code !== 0) {
    throw dockerError("retag", `Cannot tag "${src}" as "${dst}"`, undefined, tail(r.stderr));
  }
}

/** `docker rmi` without force on each ref/ID; failures are returned, not thrown. */
export async function removeImages(refs: string[], opts: DockerOptions = {}): Promise<string[]> {
  const failed: string[] = [];
  for (const ref of refs) {
    const r = await runDocker(["rmi", "--no-prune", ref], opts);
    if (r.code !== 0 && !/No such image/i.test(r.stderr)) failed.push(ref);
  }
  return failed;
}

/** Which compose CLI this host has: `docker compose` (v2) first, then `docker-compose` (v1). */
export interface ComposeCli {
  cmd: string[];
  version: string;
  major: 1 | 2;
}

export async function detectCompose(opts: DockerOptions = {}): Promise<ComposeCli | undefined> {
  const v2 = await runDocker(["compose", "version", "--short"], opts);
  if (v2.code === 0 && v2.stdout.trim()) {
    const version = v2.stdout.trim().replace(/^v/, "");
    return { cmd: [opts.bin ?? "docker", "compose"], version, major: 2 };
  }
  const v1 = await runCommand("docker-compose", ["version", "--short"], opts);
  if (v1.code === 0 && v1.stdout.trim()) {
    const version = v1.stdout.trim().replace(/^v/, "");
    const major = version.startsWith("1.") ? 1 : 2;
    return { cmd: ["docker-compose"], version, major };
  }
  return undefined;
}
