import { join } from "node:path";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertRejects,
} from "../../test/support/assert.ts";
import { fakeClock, ScriptedDocker } from "../../test/support/scripted_docker.ts";
import { createContext } from "../context.ts";
import type { ComposeCli } from "../docker.ts";
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
  startStack,
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
// The shell through the Docker seam (no engine): calls made and work bounded (polls, sleeps)
// ---------------------------------------------------------------------------------------------

const ID_OK = `sha256:${"a".repeat(64)}`;
const ID_BAD = `sha256:${"b".repeat(64)}`;

async function seamStack(image: string) {
  const dir = await Deno.makeTempDir({ prefix: "cit-stack-unit-" });
  await Deno.writeTextFile(
    join(dir, "c.yaml"),
    `services:\n  web:\n    image: ${image}\n    network_mode: host\n`,
  );
  const docker = new ScriptedDocker({
    images: [{ id: ID_OK, tags: ["cit/ok:1"], layers: [] }, {
      id: ID_BAD,
      tags: ["cit/bad:1"],
      layers: [],
    }],
    unhealthy: [ID_BAD],
  });
  const clock = fakeClock();
  const ctx = createContext({
    sink: { write: () => {}, isTTY: false },
    interactive: false,
    env: {},
    docker,
    now: clock.now,
    sleep: clock.sleep,
  });
  const opts = { cortexDir: dir, files: ["c.yaml"], project: "cit-unit", waitTimeoutSec: 60 };
  return { dir, docker, clock, ctx, opts };
}

Deno.test("startStack() through the seam: config, image check, up, one look when healthy", async () => {
  const s = await seamStack("cit/ok:1");
  try {
    const r = await startStack(s.ctx, s.opts);
    assertEquals(r.services.map((x) => [x.name, x.health]), [["web", "healthy"]]);
    assertEquals(s.docker.lines().map((l) => l.replace(/ --project-name .* -f \S+/, " …")), [
      "docker compose version --short",
      "docker compose … config",
      "docker image inspect --format {{json .}} cit/ok:1",
      "docker compose … up -d --no-build --pull never",
      // The restart baseline, then one look: healthy at once, no sleep.
      "docker ps -a -q --no-trunc --filter label=com.docker.compose.project=cit-unit",
      `docker inspect ${s.docker.containers[0].id}`,
      "docker ps -a -q --no-trunc --filter label=com.docker.compose.project=cit-unit",
      `docker inspect ${s.docker.containers[0].id}`,
    ]);
    assertEquals(s.clock.sleeps, []);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("startStack() fails at the first look at an unhealthy service, long before the timeout", async () => {
  const s = await seamStack("cit/bad:1");
  try {
    const e = await assertRejects(
      () => startStack(s.ctx, s.opts),
      InstallError,
      /service "web" healthcheck fails: nope/,
    );
    assertEquals(e.exitCode, ExitCode.Stack);
    // Bounded work instead of a timing bound: one look after the baseline, no sleep at all.
    assertEquals(s.docker.callsOf("ps").length, 2);
    assertEquals(s.clock.sleeps, []);
    assertMatch(e.detail ?? "", /last log lines of cit-unit-web-1/);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("startStack() waits out --wait-timeout with backoff, then names the pending service", async () => {
  const s = await seamStack("cit/ok:1");
  s.docker.neverHealthy.add(ID_OK);
  try {
    await assertRejects(
      () => startStack(s.ctx, s.opts),
      InstallError,
      /service "web" is not up after 60 s: health: starting/,
    );
    // 250 ms growing by 1.5x to 2 s, cut at the deadline: 60 s of fake time; one look per
    // sleep, plus the restart baseline and the last look.
    assertEquals(s.clock.sleeps.slice(0, 6), [250, 375, 563, 845, 1268, 1902]);
    assertEquals(s.clock.sleeps.reduce((a, b) => a + b, 0), 60_000);
    assertEquals(s.docker.callsOf("ps").length, s.clock.sleeps.length + 2);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});
