import { assert, assertEquals } from "../../test/support/assert.ts";
import { apiLoad, engineSocket, parseLoadResponse } from "./engine_api.ts";
import { sha256Hex } from "../hash.ts";

const enc = new TextEncoder();
const env = (m: Record<string, string>) => (n: string) => m[n];

Deno.test("engineSocket: the CLI's socket, or none where the CLI would go elsewhere", () => {
  const noCfg = () => undefined;
  assertEquals(engineSocket(env({}), noCfg), "/var/run/docker.sock");
  assertEquals(engineSocket(env({ DOCKER_HOST: "unix:///tmp/d.sock" }), noCfg), "/tmp/d.sock");
  assertEquals(engineSocket(env({ DOCKER_HOST: "tcp://10.0.0.1:2376" }), noCfg), undefined);
  assertEquals(engineSocket(env({ DOCKER_HOST: "ssh://host" }), noCfg), undefined);
  assertEquals(engineSocket(env({ DOCKER_CONTEXT: "remote" }), noCfg), undefined);
  assertEquals(engineSocket(env({ DOCKER_CONTEXT: "default" }), noCfg), "/var/run/docker.sock");
  assertEquals(engineSocket(env({}), () => '{"currentContext":"rootless"}'), undefined);
  assertEquals(engineSocket(env({}), () => "{not json"), "/var/run/docker.sock");
});

Deno.test("parseLoadResponse: the engine's answers as docker load's results", () => {
  const ok = parseLoadResponse(enc.encode(
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
      '2c\r\n{"stream":"Loaded image: cit/x:1\\n"}\n\r\n0\r\n\r\n',
  ));
  assertEquals(ok, { code: 0, stdout: "Loaded image: cit/x:1", stderr: "" });
  const streamed = parseLoadResponse(enc.encode(
    'HTTP/1.1 200 OK\r\n\r\n{"stream":"a"}\n{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}\n',
  ));
  assertEquals(streamed.code, 1);
  assertEquals(streamed.stderr, "unexpected EOF");
  const refused = parseLoadResponse(
    enc.encode('HTTP/1.1 500 Internal Server Error\r\n\r\n{"message":"no space left"}'),
  );
  assertEquals(refused, { code: 1, stdout: "", stderr: "no space left" });
  assertEquals(parseLoadResponse(new Uint8Array()).code, 1);
});

/** A one-shot fake engine on a unix socket: records the request, answers `answer`. */
async function fakeEngine(answer: string, readAll = true) {
  const dir = await Deno.makeTempDir({ prefix: "cit-engine-api-" });
  const path = `${dir}/docker.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const got = (async () => {
    const conn = await listener.accept();
    const parts: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    let text = "";
    while (readAll ? !text.endsWith("\r\n0\r\n\r\n") : text.indexOf("\r\n\r\n") < 0) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
      text += new TextDecoder("latin1").decode(buf.subarray(0, n));
    }
    await conn.write(enc.encode(answer));
    conn.close();
    return parts;
  })();
  return {
    path,
    got,
    close: async () => {
      listener.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("apiLoad: streams the tar as a chunked POST /images/load and reads the answer", async () => {
  const e = await fakeEngine(
    'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"stream":"Loaded image: cit/x:1\\n"}\n',
  );
  try {
    const data = crypto.getRandomValues(new Uint8Array(50000));
    const r = await apiLoad(e.path, async (w) => {
      const writer = w.getWriter();
      await writer.write(data.subarray(0, 30000));
      await writer.write(data.subarray(30000));
      await writer.close();
    });
    assertEquals(r, { code: 0, stdout: "Loaded image: cit/x:1", stderr: "" });
    const raw = new Uint8Array((await e.got).reduce((s, p) => s + p.length, 0));
    let off = 0;
    for (const p of await e.got) {
      raw.set(p, off);
      off += p.length;
    }
    const text = new TextDecoder("latin1").decode(raw);
    assert(text.startsWith("POST /images/load?quiet=1 HTTP/1.1\r\n"), text.slice(0, 80));
    assert(/transfer-encoding: chunked/i.test(text));
    // De-chunk the body: exactly the bytes written, in order.
    let i = text.indexOf("\r\n\r\n") + 4;
    const body: number[] = [];
    for (;;) {
      const eol = text.indexOf("\r\n", i);
      const n = parseInt(text.slice(i, eol), 16);
      if (n === 0) break;
      body.push(...raw.subarray(eol + 2, eol + 2 + n));
      i = eol + 2 + n + 2;
    }
    assertEquals(sha256Hex(new Uint8Array(body)), sha256Hex(data));
  } finally {
    await e.close();
  }
});

Deno.test("apiLoad: an engine that refuses early is an error, not a hang", async () => {
  const e = await fakeEngine('HTTP/1.1 400 Bad Request\r\n\r\n{"message":"bad tar"}', false);
  try {
    const r = await apiLoad(e.path, async (w) => {
      const writer = w.getWriter();
      const chunk = new Uint8Array(1 << 20);
      try {
        for (let k = 0; k < 64; k++) await writer.write(chunk);
        await writer.close();
      } catch { /* the engine closed: as docker load's stdin would */ }
    });
    assertEquals(r?.code, 1);
    assert(r!.stderr.includes("bad tar"), r!.stderr);
  } finally {
    await e.close();
  }
});

Deno.test("apiLoad: no socket there means undefined (the caller runs the CLI)", async () => {
  const r = await apiLoad("/nonexistent/docker.sock", () => Promise.resolve());
  assertEquals(r, undefined);
});
