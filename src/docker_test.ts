import { assert, assertEquals, assertRejects } from "../test/support/assert.ts";
import { processDocker } from "./docker.ts";

const SECRET = "pw-" + crypto.randomUUID();

/** A stream of `total` bytes of "a", in 64 KiB chunks, made as it is read. */
function bytesSource(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= total) return c.close();
      const chunk = new Uint8Array(64 * 1024).fill(0x61);
      sent += chunk.length;
      c.enqueue(chunk);
    },
  });
}

Deno.test("the runner streams stdin to a stdout sink without collecting, keeps stderr's end, passes env", async () => {
  // /bin/sh stands in for the docker CLI: the runner only spawns what it is told.
  const docker = processDocker({ bin: "/bin/sh" });
  const total = 8 * 1024 * 1024;
  let received = 0;
  const sink = new WritableStream<Uint8Array>({ write: (c) => void (received += c.length) });
  const r = await docker.run([
    "-c",
    'cat; head -c 200000 /dev/zero | tr "\\0" e >&2; echo "$PGPASSWORD" >&2',
  ], { stdin: bytesSource(total), stdout: sink, env: { PGPASSWORD: SECRET } });
  assertEquals(r.code, 0);
  assertEquals(received, total);
  assertEquals(r.stdout, "");
  assert(r.stderr.length <= 64 * 1024, `stderr kept ${r.stderr.length} bytes`);
  assert(r.stderr.endsWith(`${SECRET}\n`), "the end of stderr was lost");
  // The sink is not closed by the runner: the caller may write more (or fsync) after.
  const w = sink.getWriter();
  await w.write(new Uint8Array(1));
  assertEquals(received, total + 1);
  const missing = await processDocker({ bin: "/nonexistent/docker" }).run(["ps"]);
  assertEquals(missing.code, 127);
});

Deno.test("the runner rejects with the sink's error and ends the child", async () => {
  const docker = processDocker({ bin: "/bin/sh" });
  const sink = new WritableStream<Uint8Array>({
    write: () => {
      throw new Error("No space left on device (os error 28)");
    },
  });
  // `yes` never ends by itself: this test would hang if the child were not ended.
  await assertRejects(() => docker.run(["-c", "yes"], { stdout: sink }), Error, "No space left");
});

Deno.test("a child that stops reading its stdin early is its exit code, not an error", async () => {
  const docker = processDocker({ bin: "/bin/sh" });
  const r = await docker.run(["-c", "head -c 10 >/dev/null; exit 3"], {
    stdin: bytesSource(64 * 1024 * 1024),
  });
  assertEquals(r.code, 3);
});

Deno.test("a stdin source that fails ends the child's input and is raised after it exited", async () => {
  const docker = processDocker({ bin: "/bin/sh" });
  let n = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n++ === 3) throw new Error("Input/output error (os error 5)");
      c.enqueue(new Uint8Array(1024));
    },
  });
  let out = "";
  const sink = new WritableStream<Uint8Array>({
    write: (c) => void (out += new TextDecoder().decode(c)),
  });
  // The child sees the end of its input (wc ends) before the error reaches the caller.
  await assertRejects(
    () => docker.run(["-c", "wc -c"], { stdin: source, stdout: sink }),
    Error,
    "Input/output error",
  );
  assertEquals(out.trim(), "3072");
});

Deno.test("the runner's signal ends the call; a call's own null signal is not abortable", async () => {
  const ac = new AbortController();
  const docker = processDocker({ bin: "/bin/sh", signal: ac.signal });
  const p = docker.run(["-c", "exec sleep 30"]);
  setTimeout(() => ac.abort(), 50);
  const r = await p;
  assert(r.code !== 0, `code ${r.code}`);
  const kept = await docker.run(["-c", "echo done"], { signal: null });
  assertEquals([kept.code, kept.stdout], [0, "done\n"]);
});
