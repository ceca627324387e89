/**
 * `docker load` through the engine's API socket: `POST /images/load` on the unix socket the
 * docker CLI would use, the tar streamed as the request body (chunked) from our single hashing
 * read. Measured (bench/, case load): piping into `docker load`'s stdin adds a process hop that
 * copies every byte once more (our pipe -> the CLI -> its socket); writing to the socket
 * ourselves removes it. Reached only through the Docker seam (`DockerRunner.loadImage`, wired by
 * `processDocker`); where the socket is not known (DOCKER_HOST over tcp or ssh, a docker
 * context, a custom CLI binary) or cannot be opened, the caller falls back to the CLI.
 */
import type { RunResult, StdinFeed } from "../docker.ts";

/** Where the engine's unix socket is, from the environment; undefined: use the CLI. */
export function engineSocket(
  env: (name: string) => string | undefined,
  readConfig: () => string | undefined = defaultConfig,
): string | undefined {
  const host = env("DOCKER_HOST");
  if (host !== undefined && host !== "") {
    return host.startsWith("unix://") ? host.slice("unix://".length) : undefined;
  }
  const context = env("DOCKER_CONTEXT");
  if (context && context !== "default") return undefined;
  const cfg = readConfig();
  if (cfg) {
    try {
      const c = JSON.parse(cfg);
      if (typeof c.currentContext === "string" && c.currentContext !== "default") {
        return undefined;
      }
    } catch { /* an unreadable config: the CLI would use the default socket too */ }
  }
  return "/var/run/docker.sock";
}

function defaultConfig(): string | undefined {
  const dir = Deno.env.get("DOCKER_CONFIG") ?? `${Deno.env.get("HOME") ?? ""}/.docker`;
  try {
    return Deno.readTextFileSync(`${dir}/config.json`);
  } catch {
    return undefined;
  }
}

const enc = new TextEncoder();
const CRLF = enc.encode("\r\n");
const LAST_CHUNK = enc.encode("0\r\n\r\n");

/**
 * Loads a tar through the API socket at `socket`: `feed` writes the tar into the stream it is
 * given (as for `docker load`'s stdin). Returns what `docker load` would (code 0, the "Loaded
 * image" lines on stdout; code 1 and the engine's error on stderr), or undefined when the socket
 * cannot be opened (the caller then runs the CLI, which reports why). An abort closes the
 * connection (the engine drops the partial load) and resolves with code 130.
 */
export async function apiLoad(
  socket: string,
  feed: StdinFeed,
  signal?: AbortSignal,
): Promise<RunResult | undefined> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
  } catch {
    return undefined;
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const onAbort = () => close();
  signal?.addEventListener("abort", onAbort, { once: true });
  const writeAll = async (b: Uint8Array) => {
    let off = 0;
    while (off < b.length) off += await conn.write(b.subarray(off));
  };
  // The response is read while the body is written: the engine may answer (an error) early.
  const response = (async () => {
    const parts: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        parts.push(buf.slice(0, n));
      }
    } catch { /* closed: what came is what there is */ }
    return concat(parts);
  })();
  let writeError: unknown;
  try {
    await writeAll(enc.encode(
      "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: cortex-install\r\n" +
        "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    ));
    const body = new WritableStream<Uint8Array>({
      write: async (chunk) => {
        if (chunk.length === 0) return;
        await writeAll(enc.encode(`${chunk.length.toString(16)}\r\n`));
        await writeAll(chunk);
        await writeAll(CRLF);
      },
      close: () => writeAll(LAST_CHUNK),
      abort: () => close(),
    });
    if (typeof feed === "function") await feed(body);
    else await feed.pipeTo(body);
  } catch (e) {
    writeError = e;
  }
  if (signal?.aborted) {
    close();
    await response;
    signal.removeEventListener("abort", onAbort);
    return { code: 130, stdout: "", stderr: "interrupted" };
  }
  if (writeError !== undefined) {
    // The engine stopped reading (it answered an error, or went away): read what it said.
    try {
      await conn.closeWrite();
    } catch { /* gone */ }
  }
  const raw = await response;
  close();
  signal?.removeEventListener("abort", onAbort);
  const r = parseLoadResponse(raw);
  if (writeError !== undefined && r.code === 0) {
    return { code: 1, stdout: r.stdout, stderr: `${r.stderr}${String(writeError)}` };
  }
  return r;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * The HTTP response of `POST /images/load` as `docker load`'s result: status 200 and no `error`
 * message in the JSON stream -> code 0 and the `stream` texts; anything else -> code 1 and the
 * engine's message. Handles a chunked or plain body. Pure.
 */
export function parseLoadResponse(raw: Uint8Array): RunResult {
  const sep = indexOf(raw, CRLF2, 0);
  if (sep < 0) {
    return {
      code: 1,
      stdout: "",
      stderr: "the Docker engine closed the connection without an answer",
    };
  }
  const dec = new TextDecoder();
  const head = dec.decode(raw.subarray(0, sep));
  let bodyBytes = raw.subarray(sep + 4);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  if (/^transfer-encoding:\s*chunked/im.test(head)) bodyBytes = dechunk(bodyBytes);
  const out: string[] = [];
  const err: string[] = [];
  for (const line of dec.decode(bodyBytes).split("\n")) {
    const l = line.trim();
    if (!l) continue;
    try {
      const m = JSON.parse(l);
      if (typeof m.error === "string") err.push(m.error);
      else if (typeof m.message === "string" && status !== 200) err.push(m.message);
      else if (typeof m.stream === "string") out.push(m.stream.trimEnd());
    } catch {
      if (status !== 200) err.push(l);
    }
  }
  const ok = status === 200 && err.length === 0;
  if (!ok && err.length === 0) err.push(`the Docker engine answered ${status || "nonsense"}`);
  return { code: ok ? 0 : 1, stdout: out.join("\n"), stderr: err.join("\n") };
}

const CRLF2 = enc.encode("\r\n\r\n");

function indexOf(b: Uint8Array, pat: Uint8Array, from: number): number {
  outer: for (let i = from; i + pat.length <= b.length; i++) {
    for (let j = 0; j < pat.length; j++) if (b[i + j] !== pat[j]) continue outer;
    return i;
  }
  return -1;
}

/** Decodes an HTTP chunked body (bytes). Pure. */
function dechunk(b: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let i = 0;
  while (i < b.length) {
    const eol = indexOf(b, CRLF, i);
    if (eol < 0) break;
    const n = parseInt(new TextDecoder().decode(b.subarray(i, eol)), 16);
    if (!Number.isFinite(n) || n === 0) break;
    parts.push(b.subarray(eol + 2, eol + 2 + n));
    i = eol + 2 + n + 2;
  }
  return concat(parts);
}
