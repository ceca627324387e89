import { join } from "node:path";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertRejects,
} from "../../test/support/assert.ts";
import { createContext } from "../context.ts";
import { type ComposeCli, detectCompose, processDocker, runDocker } from "../docker.ts";
import { ExitCode, InstallError } from "../errors.ts";
import {
  activeServices,
  composeArgs,
  type ContainerState,
  decideHealth,
  judgeReadiness,
  mergeLogs,
  parseInspect,
  redactSecrets,
  stackStatus,
  startStack,
  stopStack,
  stripTopLevelName,
  upArgs,
} from "./stack.ts";

const V1: ComposeCli = { cmd: ["docker-compose"], version: "1.29.2", major: 1 };
const V2: ComposeCli = { cmd: ["docker", "compose"], version: "2.27.0", major: 2 };

Deno.test("composeArgs() runs in the Cortex dir with its root .env for v1 and v2", async (t) => {
  const cases: {
    name: string;
    cli: ComposeCli;
    envFile?: string | null;
    profiles: string[];
    cmd: string;
    args: string[];
    env: Record<string, string>;
  }[] = [
    {
      name: "v2 with profiles",
      cli: V2,
      profiles: ["linux", "gpu"],
      cmd: "docker",
      args: [
        "compose",
        "--project-name",
        "cortex",
        "--project-directory",
        "/opt/Cortex",
        "--env-file",
        "/opt/Cortex/.env",
        "-f",
        "/opt/Cortex/docker.compose.prod.yaml",
        "-f",
        "/tmp/o.yaml",
        "--profile",
        "linux",
        "--profile",
        "gpu",
      ],
      env: { COMPOSE_PROFILES: "linux,gpu" },
    },
    {
      name: "v1 without profiles or env file",
      cli: V1,
      envFile: null,
      profiles: [],
      cmd: "docker-compose",
      args: [
        "--project-name",
        "cortex",
        "--project-directory",
        "/opt/Cortex",
        "-f",
        "/opt/Cortex/docker.compose.prod.yaml",
        "-f",
        "/tmp/o.yaml",
      ],
      env: {},
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const inv = composeArgs(c.cli, {
        project: "cortex",
        files: ["docker.compose.prod.yaml", "/tmp/o.yaml"],
        profiles: c.profiles,
        cortexDir: "/opt/Cortex",
        envFile: c.envFile,
      });
      assertEquals(inv, { cmd: c.cmd, args: c.args, env: c.env, cwd: "/opt/Cortex" });
    });
  }
});

Deno.test("upArgs() never builds and never pulls on v2", async (t) => {
  await t.step("v2", () => assertEquals(upArgs(V2), ["up", "-d", "--no-build", "--pull", "never"]));
  await t.step("v1 has no --pull", () => assertEquals(upArgs(V1), ["up", "-d", "--no-build"]));
  await t.step("recreate", () =>
    assertEquals(upArgs(V1, ["gateway"], true), [
      "up",
      "-d",
      "--no-build",
      "--no-deps",
      "gateway",
    ]));
});

Deno.test("stripTopLevelName() removes only the top-level name for compose v1", async (t) => {
  await t.step("Cortex's real prod file", async () => {
    const text = await Deno.readTextFile(
      new URL("../../test/testdata/cortex-v0.1.1/docker.compose.prod.yaml", import.meta.url),
    ).catch(() => "name: cortex\nservices:\n  gateway:\n    image: g\n");
    const out = stripTopLevelName(text)!;
    assert(out !== undefined);
    assertNotMatch(out, /^name:/m);
    assertMatch(out, /^services:/m);
    assertMatch(out, /gateway:/);
  });
  await t.step("no name: unchanged", () => {
    assertEquals(stripTopLevelName("services:\n  a:\n    image: x\n    name: keep\n"), undefined);
  });
});

Deno.test("activeServices() keeps services without profiles or with an enabled one", () => {
  const cfg = {
    services: {
      gateway: { image: "g:1" },
      "node-exporter": { image: "ne", profiles: ["linux"] },
      dcgm: { image: "d", profiles: ["gpu"] },
      frontend: { build: { context: "." } },
    },
  };
  assertEquals(activeServices(cfg, ["linux"]), [
    { name: "frontend", image: undefined },
    { name: "gateway", image: "g:1" },
    { name: "node-exporter", image: "ne" },
  ]);
  assertEquals(activeServices({}, []), []);
});

const T0 = Date.parse("2026-01-01T00:00:00Z");
function c(p: Partial<ContainerState> & { service: string }): ContainerState {
  return {
    id: `id-${p.service}`,
    name: `cortex-${p.service}-1`,
    image: "img",
    status: "running",
    restartCount: 0,
    exitCode: 0,
    startedAt: new Date(T0 - 10_000).toISOString(),
    oneoff: false,
    ...p,
  };
}

Deno.test("decideHealth() decides from container states", async (t) => {
  const o = { now: T0, stableMs: 3000 };
  const cases: { name: string; services: string[]; cs: ContainerState[]; want: unknown }[] = [
    {
      name: "healthy and running: ready",
      services: ["postgres", "redis"],
      cs: [c({ service: "postgres", health: "healthy" }), c({ service: "redis" })],
      want: { kind: "ready" },
    },
    {
      name: "health starting: waiting",
      services: ["postgres"],
      cs: [c({ service: "postgres", health: "starting" })],
      want: {
        kind: "waiting",
        pending: [{
          service: "postgres",
          container: "cortex-postgres-1",
          reason: "health: starting",
        }],
      },
    },
    {
      name: "no healthcheck, just started: waiting",
      services: ["redis"],
      cs: [c({ service: "redis", startedAt: new Date(T0 - 1000).toISOString() })],
      want: {
        kind: "waiting",
        pending: [{ service: "redis", container: "cortex-redis-1", reason: "just started" }],
      },
    },
    {
      name: "missing container: waiting",
      services: ["gateway"],
      cs: [c({ service: "gateway", oneoff: true })],
      want: { kind: "waiting", pending: [{ service: "gateway", reason: "no container yet" }] },
    },
    {
      name: "exited: failed with its code",
      services: ["postgres", "gateway"],
      cs: [
        c({ service: "postgres", health: "starting" }),
        c({ service: "gateway", status: "exited", exitCode: 3 }),
      ],
      want: {
        kind: "failed",
        service: "gateway",
        container: "cortex-gateway-1",
        reason: "exited with code 3",
      },
    },
    {
      name: "restarted since up: failed",
      services: ["gateway"],
      cs: [c({ service: "gateway", restartCount: 2, exitCode: 1 })],
      want: {
        kind: "failed",
        service: "gateway",
        container: "cortex-gateway-1",
        reason: "keeps restarting (2 restarts, last exit code 1)",
      },
    },
    {
      name: "unhealthy: failed with the check's output",
      services: ["postgres"],
      cs: [
        c({ service: "postgres", health: "unhealthy", lastHealthOutput: "no response\n" }),
      ],
      want: {
        kind: "failed",
        service: "postgres",
        container: "cortex-postgres-1",
        reason: "healthcheck fails: no response",
      },
    },
  ];
  for (const k of cases) {
    await t.step(k.name, () => assertEquals(decideHealth(k.services, k.cs, o), k.want));
  }
  await t.step("restarts before up (baseline) are not a failure", () => {
    const cs = [c({ service: "gateway", restartCount: 2 })];
    assertEquals(decideHealth(["gateway"], cs, { ...o, baseline: { "id-gateway": 2 } }), {
      kind: "ready",
    });
  });
});

Deno.test("parseInspect() reads docker inspect JSON", () => {
  const got = parseInspect([{
    Id: "abc",
    Name: "/cortex_gateway_1",
    RestartCount: 1,
    Config: {
      Image: "cortex-gateway:latest",
      Labels: { "com.docker.compose.service": "gateway", "com.docker.compose.oneoff": "False" },
    },
    State: {
      Status: "running",
      ExitCode: 0,
      StartedAt: "2026-01-01T00:00:00Z",
      Health: { Status: "unhealthy", Log: [{ ExitCode: 1, Output: "a" }, { Output: "b\n" }] },
    },
  }]);
  assertEquals(got, [{
    id: "abc",
    name: "cortex_gateway_1",
    service: "gateway",
    image: "cortex-gateway:latest",
    status: "running",
    health: "unhealthy",
    restartCount: 1,
    exitCode: 0,
    startedAt: "2026-01-01T00:00:00Z",
    oneoff: false,
    lastHealthOutput: "b",
  }]);
});

Deno.test("judgeReadiness() checks status and JSON fields", async (t) => {
  const cases: [string, number, string, Record<string, string> | undefined, string | undefined][] =
    [
      ["ok", 200, '{"status":"ok"}', { status: "ok" }, undefined],
      ["no expectation", 204, "", undefined, undefined],
      ["503", 503, '{"status":"ok"}', { status: "ok" }, "HTTP 503"],
      [
        "wrong value",
        200,
        '{"status":"starting"}',
        { status: "ok" },
        'field "status" is "starting", expected "ok"',
      ],
      ["missing field", 200, "{}", { status: "ok" }, 'field "status" is missing'],
      ["not json", 200, "<html>", { status: "ok" }, "the body is not JSON: <html>"],
      ["number field", 200, '{"n":1}', { n: "1" }, undefined],
    ];
  for (const [name, status, body, exp, want] of cases) {
    await t.step(name, () => assertEquals(judgeReadiness(status, body, exp), want));
  }
});

Deno.test("redactSecrets() hides secret values and keeps the rest", async (t) => {
  const cases: [string, string][] = [
    ["INTERNAL_VLLM_API_KEY=abc123 started", "INTERNAL_VLLM_API_KEY=*** started"],
    ['{"hf_token": "hf_xyz", "model": "m"}', '{"hf_token": "***", "model": "m"}'],
    ["POSTGRES_PASSWORD: cortex", "POSTGRES_PASSWORD: ***"],
    [
      "DATABASE_URL=postgresql+asyncpg://cortex:s3cret@127.0.0.1:15432/cortex",
      "DATABASE_URL=postgresql+asyncpg://cortex:***@127.0.0.1:15432/cortex",
    ],
    ["Authorization: Bearer abcdefghijk", "Authorization: Bearer ***"],
    ["VLLM_IMAGE=vllm/vllm-openai:v0.6.3", "VLLM_IMAGE=vllm/vllm-openai:v0.6.3"],
    ["listening on 127.0.0.1:8084", "listening on 127.0.0.1:8084"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assertEquals(redactSecrets(input), want));
  }
});

Deno.test("mergeLogs() orders stdout and stderr by time and keeps the tail", () => {
  const out = "2026-01-01T00:00:01.5Z out-b\n2026-01-01T00:00:03.000000001Z out-d\n";
  const err = "2026-01-01T00:00:00.9Z err-a\n2026-01-01T00:00:02Z err-c\n";
  assertEquals(mergeLogs(out, err, 30), "err-a\nout-b\nerr-c\nout-d");
  assertEquals(mergeLogs(out, err, 2), "err-c\nout-d");
});

// ---------------------------------------------------------------------------------------------
// Integration: a real engine and compose (skipped when there is none)
// ---------------------------------------------------------------------------------------------

async function engine(): Promise<ComposeCli | undefined> {
  const info = await runDocker(["info", "--format", "{{.ServerVersion}}"]);
  if (info.code !== 0) return undefined;
  return await detectCompose(processDocker());
}
const compose = await engine();

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
  ignore: compose === undefined,
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
        const t0 = Date.now();
        const e = await assertRejects(
          () => startStack(ctx, { ...base, files: ["bad.yaml"] }),
          InstallError,
          /service "web" healthcheck fails: nope/,
        );
        assert(Date.now() - t0 < 30_000, "fails fast, long before the wait timeout");
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
