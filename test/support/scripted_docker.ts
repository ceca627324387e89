/**
 * A scripted Docker engine for unit tests of the orchestration (runInstall, the load and its
 * undo, the stack's waits, rollback): a `DockerRunner` (the seam of src/docker.ts) that answers
 * from an in-memory engine and records every call. No process is started and no engine is needed.
 *
 * It answers what the program asks: `info`, `images`, `image inspect`, `load` (the stream is read
 * and the tar's images created, from the tar's own index), `tag`, `rmi`, `ps`, `inspect`, `logs`,
 * `stop`, `start`, and `compose version | config | up | down` (Compose v2). Containers are healthy
 * unless their image ID is listed in `neverHealthy` or `unhealthy`.
 *
 * The `postgres` service's containers answer `docker exec` as a database would (FakeDatabase, one
 * per project, so it outlives its containers as a volume does): `pg_isready`, the inspect query
 * of src/host/db.ts, `pg_dump` (a dump of its lines) and the one-transaction restore (committed
 * only when the stream ends with COMMIT and the echo db.ts sends). The journeys (test/e2e) never
 * use it: they run the real PostgreSQL.
 */
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import type { DockerCallOptions, DockerCli, DockerRunner, RunResult } from "../../src/docker.ts";
import { readTarIndex } from "../../src/bundle/tarindex.ts";
import { normalizeRef } from "../../src/bundle/release.ts";
import { canonicalRef } from "../../src/host/compose.ts";
import { throwIfAborted } from "../../src/errors.ts";
import { concatBytes } from "../../src/copy.ts";

/** One call, as the program made it. */
export interface ScriptedCall {
  cli: DockerCli;
  args: string[];
  cwd?: string;
  /** Bytes read from stdin (for `load`). */
  stdinBytes?: number;
}

export interface FakeImage {
  id: string;
  tags: string[];
  /** Diff IDs (RootFS.Layers). */
  layers: string[];
}

interface Container {
  id: string;
  name: string;
  project: string;
  service: string;
  image: string;
  imageId?: string;
  status: string;
  health: string;
  /** `KEY=value` from the service's `environment:`. */
  env: string[];
}

/**
 * The database of a project's postgres: its content as SQL lines (`INSERT INTO public.t ...`
 * make a table non-empty), the comment a restore leaves, and how its tools fail when told to.
 */
export interface FakeDatabase {
  lines: string[];
  comment?: string;
  /** pg_dump exits 1 after writing half its output. */
  failDump?: boolean;
  /** The restore's psql fails on an SQL error (nothing committed). */
  failRestore?: boolean;
  /** Dumps and restores done, for assertions. */
  dumps: number;
  restores: number;
}

/** A dump of a fake database as pg_dump writes one (with its closing line). */
export function fakeDump(lines: string[]): string {
  return `--\n-- PostgreSQL database dump\n--\n\n${lines.map((l) => `${l}\n`).join("")}\n` +
    "--\n-- PostgreSQL database dump complete\n--\n\n";
}

/** How one `docker load` fails (see ScriptedDockerOptions.failLoad). */
export interface LoadFailure {
  /** The engine stops reading after this many bytes and exits 1. */
  afterBytes: number;
  /** Image IDs the failed load leaves in the engine (layers already committed). */
  leaves?: string[];
}

export interface ScriptedDockerOptions {
  /** Images in the engine at the start. */
  images?: FakeImage[];
  /** `docker info` (the doctor's JSON) as an object. */
  info?: Record<string, unknown>;
  /** The nth `docker load` (0-based) fails when this returns a failure. */
  failLoad?: (n: number) => LoadFailure | undefined;
  /** Image IDs whose containers never become healthy (health "starting" forever). */
  neverHealthy?: Iterable<string>;
  /** Image IDs whose containers' healthcheck fails (health "unhealthy"). */
  unhealthy?: Iterable<string>;
  /**
   * A host with only the standalone Compose v1 of this version: `docker compose` is not a
   * command, `docker-compose` answers. Default: Compose v2 only (2.26.1).
   */
  composeV1?: string;
  /**
   * Called when `compose up` starts a container: stands for what the service does at start (a
   * gateway migrating the database: change `docker.database(project).lines`).
   */
  onStart?: (c: { project: string; service: string; imageId: string }) => void;
}

const ok = (stdout = ""): RunResult => ({ code: 0, stdout, stderr: "" });
const fail = (stderr: string, code = 1): RunResult => ({ code, stdout: "", stderr });

/** The scripted engine: `run` is the seam; the rest is for the test to arrange and inspect. */
export class ScriptedDocker implements DockerRunner {
  readonly calls: ScriptedCall[] = [];
  /** Image ID -> image. */
  readonly images = new Map<string, FakeImage>();
  readonly containers: Container[] = [];
  /** The database of each project's postgres (created empty on first use). */
  readonly databases = new Map<string, FakeDatabase>();
  readonly neverHealthy: Set<string>;
  readonly unhealthy: Set<string>;
  loads = 0;
  private nextContainer = 1;

  constructor(private o: ScriptedDockerOptions = {}) {
    for (const i of o.images ?? []) this.images.set(i.id, { ...i, tags: i.tags.map(canonicalRef) });
    this.neverHealthy = new Set(o.neverHealthy ?? []);
    this.unhealthy = new Set(o.unhealthy ?? []);
  }

  /** The image ID a ref (or ID) points at, if any. */
  idOf(ref: string): string | undefined {
    if (this.images.has(ref)) return ref;
    const c = canonicalRef(ref);
    for (const i of this.images.values()) if (i.tags.includes(c)) return i.id;
    return undefined;
  }

  /** The calls whose arguments start with these words (e.g. "compose" or "image inspect"). */
  callsOf(...prefix: string[]): ScriptedCall[] {
    return this.calls.filter((c) => prefix.every((p, i) => c.args[i] === p));
  }

  /** The database of a project (empty when first asked). */
  database(project: string): FakeDatabase {
    let db = this.databases.get(project);
    if (!db) {
      db = { lines: [], dumps: 0, restores: 0 };
      this.databases.set(project, db);
    }
    return db;
  }

  /** Each call as one line (`docker tag a b`), for readable assertions. */
  lines(): string[] {
    return this.calls.map((c) => [c.cli, ...c.args].join(" "));
  }

  async run(args: string[], opts: DockerCallOptions = {}): Promise<RunResult> {
    const call: ScriptedCall = { cli: opts.cli ?? "docker", args: [...args], cwd: opts.cwd };
    this.calls.push(call);
    if (call.cli === "docker-compose") {
      if (!this.o.composeV1) return fail("docker-compose: command not found", 127);
      if (args[0] === "version") return ok(`${this.o.composeV1}\n`);
      return await this.compose(args);
    }
    if (args[0] === "compose" && this.o.composeV1) {
      return fail("docker: 'compose' is not a docker command.");
    }
    let stdin: Uint8Array | undefined;
    let broken: LoadFailure | undefined;
    if (args[0] === "load") {
      broken = this.o.failLoad?.(this.loads);
      this.loads++;
    }
    if (opts.stdin) {
      stdin = await readStdin(opts.stdin, broken?.afterBytes);
      call.stdinBytes = stdin.length;
    }
    const r = await this.answer(args, stdin, broken);
    // A streaming call gets its stdout through the sink (with the sink's errors), as the real one.
    if (opts.stdout) {
      const w = opts.stdout.getWriter();
      try {
        if (r.stdout) await w.write(new TextEncoder().encode(r.stdout));
      } finally {
        w.releaseLock();
      }
      return { ...r, stdout: "" };
    }
    return r;
  }

  private async answer(
    args: string[],
    stdin: Uint8Array | undefined,
    broken: LoadFailure | undefined,
  ): Promise<RunResult> {
    const [cmd, ...rest] = args;
    switch (cmd) {
      case "info":
        return rest.join(" ").includes("{{.Driver}}")
          ? ok("overlay2\t[]\n")
          : ok(JSON.stringify(this.o.info ?? DEFAULT_INFO));
      case "images":
        return this.imagesCmd(rest);
      case "image":
        return rest[0] === "inspect" ? this.inspectImages(rest.slice(1)) : fail("unknown");
      case "load":
        return await this.load(stdin ?? new Uint8Array(), broken);
      case "tag": {
        const id = this.idOf(rest[0]);
        if (!id) return fail(`Error response from daemon: No such image: ${rest[0]}`);
        this.untag(canonicalRef(rest[1]));
        this.images.get(id)!.tags.push(canonicalRef(rest[1]));
        return ok();
      }
      case "rmi":
        return this.rmi(rest.filter((a) => !a.startsWith("--")));
      case "ps":
        return this.ps(rest);
      case "inspect":
        return this.inspectContainers(rest);
      case "stop":
      case "start":
        for (const c of this.containers.filter((c) => rest.includes(c.id))) {
          c.status = cmd === "stop" ? "exited" : "running";
        }
        return ok();
      case "exec":
        return this.exec(rest, stdin);
      case "logs":
        return ok(`2026-01-01T00:00:00.000000000Z ${rest.at(-1)} starting\n`);
      case "compose":
        return this.compose(rest);
      default:
        return fail(`scripted docker: no answer for "docker ${args.join(" ")}"`);
    }
  }

  private imagesCmd(rest: string[]): RunResult {
    if (rest.includes("-q")) return ok([...this.images.keys()].map((i) => `${i}\n`).join(""));
    const lines: string[] = [];
    for (const i of this.images.values()) {
      for (const t of i.tags) lines.push(`${t}\t${i.id}\n`);
      if (i.tags.length === 0) lines.push(`<none>:<none>\t${i.id}\n`);
    }
    return ok(lines.join(""));
  }

  private inspectImages(rest: string[]): RunResult {
    const fi = rest.indexOf("--format");
    const format = fi >= 0 ? rest[fi + 1] : "{{json .}}";
    const refs = rest.filter((_, i) => i !== fi && i !== fi + 1);
    const out: string[] = [];
    let missing = false;
    for (const ref of refs) {
      const id = this.idOf(ref);
      if (!id) {
        missing = true;
        continue;
      }
      const i = this.images.get(id)!;
      out.push(
        format.includes("RootFS.Layers") ? JSON.stringify(i.layers) : JSON.stringify({
          Id: i.id,
          RepoTags: i.tags,
          Size: 1000,
          RootFS: { Layers: i.layers },
          Config: { Env: [] },
        }),
      );
    }
    const stdout = out.map((l) => `${l}\n`).join("");
    return missing ? { code: 1, stdout, stderr: "Error: No such image" } : ok(stdout);
  }

  private async load(bytes: Uint8Array, broken: LoadFailure | undefined): Promise<RunResult> {
    if (broken) {
      for (const id of broken.leaves ?? []) {
        if (!this.images.has(id)) this.images.set(id, { id, tags: [], layers: [] });
      }
      return fail("Error processing tar file(exit status 1): unexpected EOF");
    }
    // The engine reads the tar's own index, as `docker load` does.
    const tmp = await Deno.makeTempFile({ prefix: "cit-scripted-load-", suffix: ".tar" });
    try {
      await Deno.writeFile(tmp, bytes);
      const idx = await readTarIndex(tmp);
      const said: string[] = [];
      for (const img of idx.images) {
        const tags = img.repoTags.map((t) => canonicalRef(normalizeRef(t)));
        for (const t of tags) this.untag(t);
        const have = this.images.get(img.imageId);
        if (have) have.tags.push(...tags.filter((t) => !have.tags.includes(t)));
        else this.images.set(img.imageId, { id: img.imageId, tags, layers: img.diffIds });
        said.push(
          ...(tags.length
            ? tags.map((t) => `Loaded image: ${t}`)
            : [`Loaded image ID: ${img.imageId}`]),
        );
      }
      return ok(said.map((l) => `${l}\n`).join(""));
    } catch (e) {
      return fail(`Error processing tar file: ${(e as Error).message}`);
    } finally {
      await Deno.remove(tmp);
    }
  }

  private untag(tag: string): void {
    for (const i of this.images.values()) i.tags = i.tags.filter((t) => t !== tag);
  }

  private rmi(refs: string[]): RunResult {
    for (const ref of refs) {
      if (this.images.has(ref)) {
        this.images.delete(ref);
        continue;
      }
      const id = this.idOf(ref);
      if (!id) return fail(`Error: No such image: ${ref}`);
      const img = this.images.get(id)!;
      img.tags = img.tags.filter((t) => t !== canonicalRef(ref));
      if (img.tags.length === 0) this.images.delete(id);
    }
    return ok();
  }

  private ps(rest: string[]): RunResult {
    const labels = rest.flatMap((a, i) => rest[i - 1] === "--filter" ? [a] : []);
    const want = (c: Container) =>
      labels.every((l) =>
        l === `label=com.docker.compose.project=${c.project}` ||
        l === `label=com.docker.compose.service=${c.service}`
      );
    const all = rest.includes("-a");
    return ok(
      this.containers.filter((c) => want(c) && (all || c.status === "running"))
        .map((c) => `${c.id}\n`).join(""),
    );
  }

  /** `docker exec [-i] [-e NAME]... <container> cmd...` on a postgres container. */
  private exec(rest: string[], stdin: Uint8Array | undefined): RunResult {
    let i = 0;
    while (rest[i]?.startsWith("-")) i += rest[i] === "-e" ? 2 : 1;
    const c = this.containers.find((x) => x.id === rest[i] || x.name === rest[i]);
    if (!c) return fail(`Error: No such container: ${rest[i]}`);
    if (c.status !== "running") {
      return fail(`Error response from daemon: Container ${c.id} is not running`);
    }
    if (c.service !== "postgres") {
      return fail(`OCI runtime exec failed: ${rest[i + 1]}: not found`, 126);
    }
    const [tool, ...args] = rest.slice(i + 1);
    const db = this.database(c.project);
    if (tool === "pg_isready") return ok();
    if (tool === "pg_dump") {
      db.dumps++;
      const dump = fakeDump(db.lines);
      return db.failDump
        ? {
          code: 1,
          stdout: dump.slice(0, dump.length >> 1),
          stderr: "pg_dump: error: connection lost",
        }
        : ok(dump);
    }
    if (tool === "psql" && args.includes("-c")) {
      const nonEmpty = [
        ...new Set(db.lines.flatMap((l) => l.match(/^INSERT INTO (\S+)/)?.[1] ?? [])),
      ];
      return ok(
        JSON.stringify({
          size: fakeDump(db.lines).length,
          version: "15.20",
          tables: nonEmpty.length,
          non_empty: nonEmpty.sort(),
          alembic: null,
          comment: db.comment ?? null,
        }) + "\n",
      );
    }
    if (tool === "psql" && args.includes("-f")) {
      const text = new TextDecoder().decode(stdin ?? new Uint8Array());
      if (db.failRestore) {
        return {
          code: 3,
          stdout: "",
          stderr: 'psql:<stdin>:3: ERROR:  relation "t" already exists',
        };
      }
      const m = text.match(
        /\nDO \$cit\$[^\n]*restored from a dump with sha256 ([0-9a-f]{64})[^\n]*\nCOMMIT;\n\\echo (\S+)\n$/,
      );
      if (!m) return ok(); // ROLLBACK: nothing changed
      db.restores++;
      const body = text.slice(text.indexOf("\n") + 1, m.index);
      db.lines = body.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("--"));
      db.comment = `cortex-install: restored from a dump with sha256 ${m[1]}`;
      return ok(`${m[2]}\n`);
    }
    return fail(`scripted docker: no answer for exec ${tool}`);
  }

  private inspectContainers(rest: string[]): RunResult {
    const fi = rest.indexOf("--format");
    const format = fi >= 0 ? rest[fi + 1] : undefined;
    const ids = rest.filter((_, k) => fi < 0 || (k !== fi && k !== fi + 1));
    const found = this.containers.filter((c) => ids.includes(c.id) || ids.includes(c.name));
    if (format === "{{json .Config.Env}}") {
      return found[0] ? ok(JSON.stringify(found[0].env) + "\n") : fail("Error: No such object");
    }
    if (format === "{{.State.Running}}") {
      return found[0] ? ok(`${found[0].status === "running"}\n`) : fail("Error: No such object");
    }
    const out = found.map((c) => ({
      Id: c.id,
      Name: `/${c.name}`,
      RestartCount: 0,
      Config: {
        Image: c.image,
        Labels: {
          "com.docker.compose.project": c.project,
          "com.docker.compose.service": c.service,
          "com.docker.compose.oneoff": "False",
        },
      },
      State: {
        Status: c.status,
        ExitCode: 0,
        StartedAt: "2026-01-01T00:00:00Z",
        Health: {
          Status: c.health,
          Log: c.health === "unhealthy" ? [{ ExitCode: 1, Output: "nope\n" }] : [],
        },
      },
    }));
    return ok(JSON.stringify(out));
  }

  private async compose(rest: string[]): Promise<RunResult> {
    if (rest[0] === "version") return ok("2.26.1\n");
    let project = "";
    const files: string[] = [];
    const profiles: string[] = [];
    let i = 0;
    for (; i < rest.length; i++) {
      const a = rest[i];
      if (a === "--project-name") project = rest[++i];
      else if (a === "-f") files.push(rest[++i]);
      else if (a === "--profile") profiles.push(rest[++i]);
      else if (a === "--project-directory" || a === "--env-file") i++;
      else break;
    }
    const [sub, ...opts] = rest.slice(i);
    const services = await mergedServices(files);
    if (sub === "config") return ok(stringifyYaml({ services }));
    if (sub === "down") {
      for (let k = this.containers.length - 1; k >= 0; k--) {
        if (this.containers[k].project === project) this.containers.splice(k, 1);
      }
      return ok();
    }
    if (sub === "up") {
      const named = opts.filter((a, k) => !a.startsWith("-") && opts[k - 1] !== "--pull");
      for (const [name, s] of Object.entries(services)) {
        const own = Array.isArray(s.profiles) ? s.profiles.map(String) : [];
        if (own.length > 0 && !own.some((p) => profiles.includes(p))) continue;
        if (named.length > 0 && !named.includes(name)) continue;
        const image = String(s.image ?? "");
        const imageId = this.idOf(image);
        if (!imageId) return fail(`Error: No such image: ${image}`);
        const old = this.containers.findIndex((c) => c.project === project && c.service === name);
        if (old >= 0) this.containers.splice(old, 1);
        this.containers.push({
          id: `c${String(this.nextContainer++).padStart(63, "0")}`,
          name: `${project}-${name}-1`,
          project,
          service: name,
          image,
          imageId,
          status: "running",
          env: envList(s.environment),
          health: this.unhealthy.has(imageId)
            ? "unhealthy"
            : this.neverHealthy.has(imageId)
            ? "starting"
            : "healthy",
        });
        this.o.onStart?.({ project, service: name, imageId });
      }
      return ok();
    }
    return fail(`scripted compose: no answer for "${sub}"`);
  }
}

/** A compose service's `environment:` (map or list) as `KEY=value` lines. */
function envList(e: unknown): string[] {
  if (Array.isArray(e)) return e.map(String);
  if (e && typeof e === "object") {
    return Object.entries(e as Record<string, unknown>).map(([k, v]) => `${k}=${v ?? ""}`);
  }
  return [];
}

/** A docker info as engine 20.10 gives it (the doctor's recorded testdata). */
const DEFAULT_INFO = JSON.parse(
  Deno.readTextFileSync(
    new URL("../../src/doctor/testdata/docker-info-20.10-root.json", import.meta.url),
  ),
);

/** The services of compose files merged in order (later files' keys win), without interpolation. */
async function mergedServices(files: string[]): Promise<Record<string, Record<string, unknown>>> {
  const services: Record<string, Record<string, unknown>> = {};
  for (const f of files) {
    const doc = parseYaml(await Deno.readTextFile(f)) as
      | { services?: Record<string, Record<string, unknown>> }
      | null;
    for (const [name, s] of Object.entries(doc?.services ?? {})) {
      services[name] = { ...services[name], ...s };
    }
  }
  return services;
}

/** Reads a process's stdin feed; with `limit`, the pipe breaks after that many bytes. */
async function readStdin(
  feed: NonNullable<DockerCallOptions["stdin"]>,
  limit?: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      if (limit !== undefined && n + chunk.length > limit) {
        // The engine read up to the limit, then died: the pipe breaks.
        parts.push(chunk.slice(0, limit - n));
        n = limit;
        throw new Error("broken pipe");
      }
      // The feeder reuses its buffers once a write is done: keep a copy.
      parts.push(chunk.slice());
      n += chunk.length;
    },
  });
  if (typeof feed === "function") await feed(sink);
  else await feed.pipeTo(sink).catch(() => {});
  return concatBytes(parts, n);
}

/** A clock for ctx.now/ctx.sleep: a sleep returns at once and moves the clock by its length. */
export function fakeClock(start = Date.parse("2026-01-18T12:00:00Z")) {
  let t = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => new Date(t),
    sleep: (ms: number, signal?: AbortSignal) => {
      throwIfAborted(signal);
      sleeps.push(ms);
      t += ms;
      return Promise.resolve();
    },
  };
}
