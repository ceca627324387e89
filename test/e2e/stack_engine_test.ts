/**
 * startStack()/stopStack() in process against a real engine and compose (the real runner, not
 * the scripted seam): a busybox stack with a healthcheck, readiness, a failing healthcheck, an
 * exiting service, a missing image. The same decisions run engine-free in src/host/stack_test.ts.
 */
import { join } from "node:path";
import { assertEquals, assertMatch, assertNotMatch, assertRejects } from "../support/assert.ts";
import { createContext } from "../../src/context.ts";
import { type ComposeCli, detectCompose, processDocker, runDocker } from "../../src/docker.ts";
import { ExitCode, InstallError } from "../../src/errors.ts";
import { stackStatus, startStack, stopStack } from "../../src/host/stack.ts";

// A journey needs the engine: without compose, startStack fails (no silent skip).
const compose: ComposeCli | undefined = await detectCompose(processDocker());

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function makeImage(ref: string, unique: string): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "cit-stack-root-" });
  try {
    await Deno.mkdir(join(root, "bin"));
    await Deno.copyFile("/bin/busybox", join(root, "bin/busybox"));
    for (const a of ["sh", "httpd", "wget", "echo", "mkdir", "sleep", "cat"]) {
      await Deno.symlink("busybox", join(root, "bin", a));
    }
    await Deno.writeTextFile(join(root, "unique"), unique);
    const tar = new Deno.Command("tar", { args: ["-C", root, "-c", "."], stdout: "piped" }).spawn();
    const r = await runDocker(
      ["import", "--change", "LABEL cit=1", "--change", "LABEL cit.area=stack", "-", ref],
      { stdin: tar.stdout },
    );
    await tar.status;
    if (r.code !== 0) throw new Error(`docker import failed: ${r.stderr}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function quietCtx() {
  const lines: string[] = [];
  const ctx = createContext({
    sink: { write: (t) => void lines.push(t), isTTY: false },
    interactive: false,
  });
  return { ctx, lines };
}

Deno.test({
  name: "startStack() brings up a real stack, waits healthy, checks readiness; failures exit 6",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const id = crypto.randomUUID().slice(0, 8);
    const ref = `cit-stack-${id}/bb:1`;
    const project = `cit-stack-${id}`;
    const dir = await Deno.makeTempDir({ prefix: "cit-stack-" });
    const port = freePort();
    await makeImage(ref, id);
    // The port comes from the root .env: proves interpolation uses it with v1 and v2.
    await Deno.writeTextFile(join(dir, ".env"), `CIT_PORT=${port}\nCIT_TOKEN=hunter2\n`);
    const good = `name: ignored-by-install
services:
  web:
    image: ${ref}
    network_mode: host
    environment:
      CIT_TOKEN: \${CIT_TOKEN}
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo '{\\"status\\":\\"ok\\"}' > /www/health && httpd -f -p 127.0.0.1:\${CIT_PORT:-1} -h /www & wait"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:\${CIT_PORT:-1}/health"]
      interval: 1s
      timeout: 2s
      retries: 5
  idle:
    image: ${ref}
    network_mode: host
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
  extra:
    image: ${ref}
    network_mode: host
    profiles: ["never"]
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
`;
    await Deno.writeTextFile(join(dir, "good.yaml"), good);
    const base = { cortexDir: dir, project, compose, stableMs: 1000, waitTimeoutSec: 40 };
    const { ctx } = quietCtx();
    try {
      await t.step("healthy stack and readiness ok", async () => {
        const r = await startStack(ctx, {
          ...base,
          files: ["good.yaml"],
          readiness: [
            {
              service: "web",
              url: `http://127.0.0.1:${port}/health`,
              expectJson: { status: "ok" },
            },
            { service: "extra", url: "http://127.0.0.1:1/never-started" },
          ],
        });
        assertEquals(r.project, project);
        assertEquals(r.services.map((s) => [s.name, s.state, s.health ?? "-"]), [
          ["idle", "running", "-"],
          ["web", "running", "healthy"],
        ]);
        assertEquals(r.readiness.map((x) => [x.service, x.ok]), [["web", true]]);
        assertEquals(r.urls, [`http://127.0.0.1:${port}/health`]);
        const st = await stackStatus(ctx, { project });
        assertEquals([st.running, st.healthy, st.services.length], [true, true, 2]);
      });

      await t.step("readiness that never answers ok -> stack error", async () => {
        const e = await assertRejects(
          () =>
            startStack(ctx, {
              ...base,
              waitTimeoutSec: 3,
              files: ["good.yaml"],
              readiness: [{
                service: "web",
                url: `http://127.0.0.1:${port}/health`,
                expectJson: { status: "degraded" },
              }],
            }),
          InstallError,
          /is not ready after 3 s: field "status" is "ok", expected "degraded"/,
        );
        assertEquals(e.exitCode, ExitCode.Stack);
      });

      await t.step("stopStack() removes the containers", async () => {
        const r = await stopStack(ctx, { ...base, files: ["good.yaml"] });
        assertEquals(r.removed.length, 2);
        assertEquals((await stackStatus(ctx, { project })).services, []);
      });

      await t.step("failing healthcheck -> exit 6 with redacted logs in detail", async () => {
        const bad = good
          .replace(
            /command: \["sh", "-c", "trap 'exit 0' TERM; mkdir[^\n]*/,
            `command: ["sh", "-c", "trap 'exit 0' TERM; echo CIT_TOKEN=$$CIT_TOKEN booting; sleep 600 & wait"]`,
          )
          .replace(/test: \["CMD-SHELL", "wget[^\n]*/, `test: ["CMD-SHELL", "echo nope; exit 1"]`)
          .replace("retries: 5", "retries: 1");
        await Deno.writeTextFile(join(dir, "bad.yaml"), bad);
        // Failing at once on the unhealthy verdict (not after the wait timeout) is what the
        // message says: a timeout reads "is not up after 40 s" (counted polls: unit tests).
        const e = await assertRejects(
          () => startStack(ctx, { ...base, files: ["bad.yaml"] }),
          InstallError,
          /service "web" healthcheck fails: nope/,
        );
        assertEquals(e.exitCode, ExitCode.Stack);
        assertEquals(e.step, "stack");
        assertMatch(e.detail ?? "", /CIT_TOKEN=\*\*\* booting/);
        assertNotMatch(e.detail ?? "", /hunter2/);
        await stopStack(ctx, { ...base, files: ["bad.yaml"] });
      });

      await t.step("a service that exits -> exit 6 naming its code", async () => {
        const exits = good.replace(
          /command: \["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"\]/,
          `command: ["sh", "-c", "echo bye; exit 3"]`,
        );
        await Deno.writeTextFile(join(dir, "exits.yaml"), exits);
        const e = await assertRejects(
          () => startStack(ctx, { ...base, files: ["exits.yaml"] }),
          InstallError,
          /service "idle" exited with code 3/,
        );
        assertMatch(e.detail ?? "", /bye/);
      });

      await t.step("an image that is not in the engine -> exit 6 before up", async () => {
        await Deno.writeTextFile(
          join(dir, "missing.yaml"),
          `services:\n  x:\n    image: cit-stack-${id}/absent:1\n    network_mode: host\n`,
        );
        const e = await assertRejects(
          () => startStack(ctx, { ...base, files: ["missing.yaml"] }),
          InstallError,
          `image "cit-stack-${id}/absent:1" (service x) not in the engine`,
        );
        assertEquals(e.exitCode, ExitCode.Stack);
      });
    } finally {
      await stopStack(ctx, { ...base, files: ["exits.yaml"] }).catch(() => {});
      await stopStack(ctx, { ...base, files: ["good.yaml"] }).catch(() => {});
      await runDocker(["rmi", ref]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
