/**
 * Running and timing whole processes for the benchmark suite: wall time and peak RSS of a command
 * (GNU time's `%M` when /usr/bin/time exists, else none), page-cache drops, shell helpers.
 */

/** What one timed process did. */
export interface Timed {
  seconds: number;
  /** Peak resident set of the process (and its waited-for children), bytes; absent if unknown. */
  peakRss?: number;
  /** CPU seconds (user + system) of the process and its waited-for children, when known. */
  cpu?: number;
  code: number;
  stdout: string;
  stderr: string;
}

const TIME_BIN = "/usr/bin/time";
let timeBin: boolean | undefined;

function hasTimeBin(): boolean {
  if (timeBin === undefined) {
    try {
      timeBin = Deno.statSync(TIME_BIN).isFile;
    } catch {
      timeBin = false;
    }
  }
  return timeBin;
}

/** Options of `timed`. */
export interface TimedOptions {
  env?: Record<string, string>;
  cwd?: string;
  /**
   * cgroup folders (v1: one per controller, v2: one) whose `cgroup.procs` the process joins
   * before it starts.
   */
  cgroups?: string[];
  /** Input file fed to stdin. */
  stdinFile?: string;
}

/**
 * Runs `cmd` as a fresh process and measures its wall time from spawn to exit (as a user's shell
 * does) and, with GNU time, its peak RSS. Never throws for a non-zero exit.
 */
export async function timed(cmd: string[], o: TimedOptions = {}): Promise<Timed> {
  const rssFile = hasTimeBin() ? await Deno.makeTempFile({ prefix: "cit-bench-rss-" }) : undefined;
  let argv = cmd;
  if (o.stdinFile) {
    argv = ["sh", "-c", 'f="$1"; shift; exec "$@" < "$f"', "sh", o.stdinFile, ...argv];
  }
  if (rssFile) argv = [TIME_BIN, "-f", "%M %U %S", "-o", rssFile, ...argv];
  if (o.cgroups?.length) {
    argv = [
      "sh",
      "-c",
      'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 125; ' +
      'shift; n=$((n - 1)); done; exec "$@"',
      "sh",
      String(o.cgroups.length),
      ...o.cgroups,
      ...argv,
    ];
  }
  const t0 = performance.now();
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: o.env,
    cwd: o.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - t0) / 1000;
  let peakRss: number | undefined;
  let cpu: number | undefined;
  if (rssFile) {
    const last = (await Deno.readTextFile(rssFile)).trim().split("\n").pop() ?? "";
    const [kib, user, sys] = last.split(" ").map(Number);
    if (Number.isFinite(kib) && kib > 0) peakRss = kib * 1024;
    if (Number.isFinite(user) && Number.isFinite(sys)) cpu = user + sys;
    await Deno.remove(rssFile).catch(() => {});
  }
  const dec = new TextDecoder();
  return {
    seconds,
    peakRss,
    cpu,
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Runs a command, throws with its stderr when it fails; returns stdout trimmed. */
export async function sh(cmd: string[], o: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: o.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd.join(" ")} failed (${out.code}): ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout).trim();
}

/** Runs a command and returns its exit code only (no throw). */
export async function tryRun(cmd: string[]): Promise<number> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ code: 127 }));
  return out.code;
}

/** Whether this process runs as root (uid 0). */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/**
 * `sync; echo 3 > /proc/sys/vm/drop_caches` when root: every run starts with a cold page cache,
 * as on a fresh USB stick. Returns false when it could not (not root, or a read-only /proc).
 */
export async function dropCaches(): Promise<boolean> {
  await tryRun(["sync"]);
  if (!isRoot()) return false;
  try {
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

/** Writes `bytes` random bytes to `path` (exact size; 1 MiB blocks from the OS's RNG). */
export async function randomFile(path: string, bytes: number): Promise<void> {
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(1024 * 1024);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, block.length);
    for (let j = 0; j < n; j += 65536) {
      crypto.getRandomValues(block.subarray(j, Math.min(n, j + 65536)));
    }
    let off = 0;
    while (off < n) off += await f.write(block.subarray(off, n));
    left -= n;
  }
}
