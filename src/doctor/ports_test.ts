import { assertEquals, assertMatch } from "../../test/support/assert.ts";
import {
  checkPorts,
  classifyBusy,
  healthcheckPorts,
  interpolate,
  parseDockerPs,
  parseDotEnv,
  parsePortEntry,
  parseProcNetTcp,
  portChecks,
  type PortDeps,
  portsFromCompose,
  type PortWant,
  tryListen,
} from "./ports.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`../../test/testdata/cortex-v0.1.1/${name}`, import.meta.url));

Deno.test("interpolate() resolves compose variables", async (t) => {
  const env = (k: string) => ({ SET: "7", EMPTY: "" } as Record<string, string>)[k];
  const cases: [string, string][] = [
    ["${SET:-1}", "7"],
    ["${UNSET:-15432}", "15432"],
    ["${EMPTY:-9}", "9"],
    ["${EMPTY-9}", ""],
    ["${UNSET-9}", "9"],
    ["${SET:+on}", "on"],
    ["127.0.0.1:${UNSET:-${SET}}:5432", "127.0.0.1:7:5432"],
    ["$SET", "7"],
    ["$$SET", "$SET"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assertEquals(interpolate(input, env), want));
  }
});

Deno.test("parsePortEntry() short and long syntax", async (t) => {
  const cases: [unknown, { hostIp?: string; ports: number[]; protocol: string }][] = [
    ["127.0.0.1:15432:5432", { hostIp: "127.0.0.1", ports: [15432], protocol: "tcp" }],
    ["9090:9090", { hostIp: undefined, ports: [9090], protocol: "tcp" }],
    ["5432", { hostIp: undefined, ports: [], protocol: "tcp" }],
    ["53:53/udp", { hostIp: undefined, ports: [53], protocol: "udp" }],
    ["9000-9002:9000-9002", { hostIp: undefined, ports: [9000, 9001, 9002], protocol: "tcp" }],
    ["[::1]:8080:80", { hostIp: "::1", ports: [8080], protocol: "tcp" }],
    [8080, { hostIp: undefined, ports: [], protocol: "tcp" }],
    [{ target: 80, published: "8081", host_ip: "127.0.0.1" }, {
      hostIp: "127.0.0.1",
      ports: [8081],
      protocol: "tcp",
    }],
  ];
  for (const [entry, want] of cases) {
    await t.step(JSON.stringify(entry), () => assertEquals(parsePortEntry(entry), want));
  }
});

Deno.test("portsFromCompose() reads Cortex's real compose files", async (t) => {
  await t.step("prod: postgres, redis and the host-network gateway", () => {
    const w = portsFromCompose(fixture("docker.compose.prod.yaml"), () => undefined);
    assertEquals(w.map((x) => [x.port, x.hostIp, x.service, x.source]), [
      [8084, undefined, "gateway", "host-network"],
      [15432, "127.0.0.1", "postgres", "compose"],
      [16379, "127.0.0.1", "redis", "compose"],
    ]);
  });
  await t.step("dev: env overrides, profiles kept", () => {
    const env = (k: string) =>
      ({ CORTEX_POSTGRES_PORT: "25432", PROM_PORT: "19090" } as Record<string, string>)[k];
    const w = portsFromCompose(fixture("docker.compose.dev.yaml"), env);
    assertEquals(w.map((x) => x.port), [3001, 5050, 8084, 8085, 9400, 16379, 19090, 25432]);
    assertEquals(w.find((x) => x.port === 9400)?.profiles, ["gpu"]);
  });
});

Deno.test("parseDotEnv()", () => {
  assertEquals({ ...parseDotEnv("# c\nA=1\nexport B='x y'\nC=\"q\"\nD=v # note\n") }, {
    A: "1",
    B: "x y",
    C: "q",
    D: "v",
  });
});

Deno.test("parseProcNetTcp() keeps LISTEN sockets", () => {
  const text =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
    "   0: 0100007F:3C48 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 24566 1 0000000000000000 100 0 0 10 0\n" +
    "   1: 0100007F:A1B2 0100007F:3C48 01 00000000:00000000 00:00000000 00000000     0        0 99999 1 0000000000000000 20 4 30 10 -1\n";
  assertEquals(parseProcNetTcp(text), [{ port: 15432, inode: 24566 }]);
});

const psLines = [
  JSON.stringify({
    Names: "cortex-postgres-1",
    Labels: "com.docker.compose.project=cortex,com.docker.compose.service=postgres",
    Ports: "127.0.0.1:15432->5432/tcp",
    Networks: "cortex_default",
  }),
  JSON.stringify({
    Names: "cortex-gateway-1",
    Labels: "com.docker.compose.project=cortex,com.docker.compose.service=gateway",
    Ports: "",
    Networks: "host",
  }),
  JSON.stringify({
    Names: "other-web",
    Labels: "",
    Ports: "0.0.0.0:3001->3000/tcp, :::3001->3000/tcp",
    Networks: "bridge",
  }),
].join("\n");

Deno.test("parseDockerPs() and classifyBusy()", async (t) => {
  const cs = parseDockerPs(psLines);
  await t.step("parse", () => {
    assertEquals(cs.map((c) => [c.name, c.project, c.hostNetwork, c.ports]), [
      ["cortex-postgres-1", "cortex", false, [15432]],
      ["cortex-gateway-1", "cortex", true, []],
      ["other-web", undefined, false, [3001]],
    ]);
  });
  const cases: [string, PortWant, { ours: boolean; owner?: string }][] = [
    ["our published port", { port: 15432, source: "compose" }, {
      ours: true,
      owner: 'container "cortex-postgres-1"',
    }],
    ["our host-network gateway", { port: 8084, service: "gateway", source: "host-network" }, {
      ours: true,
      owner: 'container "cortex-gateway-1" (host network)',
    }],
    ["another container", { port: 3001, source: "compose" }, {
      ours: false,
      owner: 'container "other-web"',
    }],
    ["unknown holder", { port: 9090, source: "compose" }, { ours: false }],
  ];
  for (const [name, want, exp] of cases) {
    await t.step(name, () => assertEquals(classifyBusy(want, cs, "cortex"), exp));
  }
  await t.step("another project is not ours", () => {
    assertEquals(classifyBusy({ port: 15432, source: "compose" }, cs, "other").ours, false);
  });
});

Deno.test("checkPorts() with fake binds: free, ours, busy with a process", async () => {
  const held = new Set([15432, 9090]);
  const deps: PortDeps = {
    listen: (_h, port) => (held.has(port) ? "in-use" : "free"),
    run: () => Promise.resolve({ code: 0, stdout: psLines, stderr: "" }),
    processOf: (port) => Promise.resolve(port === 9090 ? "pid 42 (prometheus)" : undefined),
  };
  const r = await checkPorts(
    [{ port: 3002, source: "default" }, { port: 9090, source: "default" }, {
      port: 15432,
      source: "default",
    }],
    "cortex",
    deps,
  );
  assertEquals(r.map((p) => [p.port, p.status, p.owner]), [
    [3002, "free", undefined],
    [9090, "busy", "pid 42 (prometheus)"],
    [15432, "ours", 'container "cortex-postgres-1"'],
  ]);
  const c = portChecks(r, "cortex");
  assertEquals(c[0].status, "fail");
  assertMatch(c[0].detail, /9090 is held by pid 42 \(prometheus\)/);
  const profOnly = portChecks([{
    port: 9400,
    profiles: ["gpu"],
    source: "compose",
    status: "busy",
  }], "cortex");
  assertEquals(profOnly[0].status, "warn");
});

Deno.test("tryListen() sees a real loopback listener", () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  try {
    assertEquals(tryListen("127.0.0.1", port), "in-use");
    assertEquals(tryListen("0.0.0.0", port), "in-use");
  } finally {
    l.close();
  }
  // Once closed it is free, unless a parallel test took that ephemeral port meanwhile: allow a
  // few fresh ports before calling it a failure.
  let free = tryListen("127.0.0.1", port) === "free";
  for (let i = 0; i < 5 && !free; i++) {
    const m = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const p = (m.addr as Deno.NetAddr).port;
    m.close();
    free = tryListen("127.0.0.1", p) === "free";
  }
  assertEquals(free, true);
});

Deno.test("a host-network service's healthcheck port is one it binds on the host", () => {
  const yaml = `services:
  api:
    network_mode: host
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:\${API_PORT:-18084}/health"]
  web:
    network_mode: host
    healthcheck: { test: "curl -f localhost:3000/ && curl -f http://localhost:3000/x" }
  db:
    network_mode: host
    healthcheck: { test: ["CMD", "pg_isready"] }
`;
  assertEquals(
    portsFromCompose(yaml, (k) => (k === "API_PORT" ? "25000" : undefined)).map((w) => [
      w.port,
      w.service,
      w.source,
    ]),
    [[3000, "web", "host-network"], [25000, "api", "host-network"]],
  );
  assertEquals(healthcheckPorts({ test: ["CMD", "true"] }, () => undefined), []);
  assertEquals(healthcheckPorts(null, () => undefined), []);
});
