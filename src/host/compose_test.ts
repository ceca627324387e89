import assert from "node:assert/strict";
import {
  builtImageName,
  composeVariables,
  hostPorts,
  interpolate,
  InterpolationError,
  parseCompose,
  planImages,
  readCompose,
} from "./compose.ts";
import { InstallError } from "../errors.ts";

const FIX = new URL("../../test/testdata/cortex-v0.1.1/", import.meta.url).pathname;
const DEV = `${FIX}docker.compose.dev.yaml`;
const PROD = `${FIX}docker.compose.prod.yaml`;

Deno.test("interpolate() follows Compose", async (t) => {
  const vars: Record<string, string> = { A: "a", EMPTY: "", B: "b" };
  const lookup = (n: string) => vars[n];
  const cases: [string, string, string][] = [
    ["plain", "x", "x"],
    ["braced", "${A}", "a"],
    ["bare", "$A/x", "a/x"],
    ["dollar escape", "$$A ($$|/)", "$A ($|/)"],
    [":- unset", "${U:-d}", "d"],
    [":- empty", "${EMPTY:-d}", "d"],
    ["- empty keeps empty", "${EMPTY-d}", ""],
    ["- unset", "${U-d}", "d"],
    ["set wins over default", "${A:-d}", "a"],
    ["nested default", "${U:-${B}-x}", "b-x"],
    [":+ set", "${A:+alt}", "alt"],
    [":+ empty", "${EMPTY:+alt}", ""],
    ["unset is empty", "[${U}]", "[]"],
    ["lone dollar", "cost $5", "cost $5"],
    ["real port", "127.0.0.1:${CORTEX_POSTGRES_PORT:-15432}:5432", "127.0.0.1:15432:5432"],
  ];
  for (const [name, input, want] of cases) {
    await t.step(name, () => assert.equal(interpolate(input, lookup), want));
  }
  await t.step(":? throws with the message", () => {
    assert.throws(
      () => interpolate("${U:?set U please}", lookup),
      (e: unknown) =>
        e instanceof InterpolationError && /U is missing a value: set U please/.test(e.message),
    );
    assert.throws(() => interpolate("${EMPTY:?x}", lookup), InterpolationError);
    assert.equal(interpolate("${EMPTY?x}", lookup), "");
  });
  await t.step("reports unset variables", () => {
    const seen: string[] = [];
    interpolate("${U1} $U2 ${U3:-x}", lookup, (n) => seen.push(n));
    assert.deepEqual(seen, ["U1", "U2"]);
  });
});

Deno.test("hostPorts() reads short and long syntax", async (t) => {
  const cases: [unknown, number[]][] = [
    ["127.0.0.1:15432:5432", [15432]],
    ["9400:9400", [9400]],
    ["8085:8084/tcp", [8085]],
    ["3001", []],
    [3001, []],
    ["127.0.0.1::5432", []],
    ["9000-9002:9000-9002", [9000, 9001, 9002]],
    ["[::1]:8080:80", [8080]],
    [{ target: 80, published: "8080", host_ip: "127.0.0.1" }, [8080]],
    [{ target: 80 }, []],
  ];
  for (const [entry, want] of cases) {
    await t.step(JSON.stringify(entry), () => assert.deepEqual(hostPorts(entry), want));
  }
});

Deno.test("composeVariables() lists the interpolated variables of the real files", () => {
  assert.deepEqual(composeVariables(Deno.readTextFileSync(PROD)), [
    "CORTEX_EXPORT_DIR",
    "CORTEX_MODELS_DIR",
    "CORTEX_POSTGRES_PORT",
    "CORTEX_REDIS_PORT",
    "HF_CACHE_DIR",
    "INTERNAL_VLLM_API_KEY",
    "VLLM_IMAGE",
  ]);
  const dev = composeVariables(Deno.readTextFileSync(DEV));
  for (const v of ["VLLM_IMAGE", "CORTEX_MODELS_DIR", "HF_CACHE_DIR", "PROM_PORT", "HOST_IP"]) {
    assert.ok(dev.includes(v), v);
  }
  assert.ok(!dev.includes("OFFLINE_MODE"));
  assert.deepEqual(composeVariables("a: $$NOT ${YES:-$$x} $ALSO"), ["ALSO", "YES"]);
});

Deno.test("readCompose() on the real dev file", async (t) => {
  await t.step("no profiles: linux/gpu services inactive", async () => {
    const m = await readCompose(DEV, { env: {} });
    assert.equal(m.project, "cortex");
    assert.deepEqual(m.services.map((s) => s.name), [
      "postgres",
      "redis",
      "gateway",
      "frontend",
      "prometheus",
      "pgadmin",
    ]);
    assert.equal(m.allServices.length, 9);
    const { volumes, environment, ...gw } = m.services.find((s) => s.name === "gateway")!;
    // Bind mounts and environment, interpolated (the register step reads them).
    assert.deepEqual(volumes[1], {
      source: "/var/cortex/models",
      destination: "/var/cortex/models",
    });
    assert.equal(environment.CORTEX_MODELS_DIR, "/var/cortex/models");
    assert.deepEqual(gw, {
      name: "gateway",
      build: true,
      healthcheck: false,
      ports: [],
      env_file: ["./backend/.env.dev"],
      depends_on: ["redis", "postgres"],
      profiles: [],
      network_mode: "host",
    });
    const pg = m.services.find((s) => s.name === "postgres")!;
    assert.equal(pg.image, "postgres:16");
    assert.equal(pg.healthcheck, true);
    assert.deepEqual(pg.ports, [15432]);
    assert.deepEqual(m.services.find((s) => s.name === "frontend")!.ports, [3001]);
    assert.deepEqual(m.services.find((s) => s.name === "prometheus")!.ports, [9090]);
  });
  await t.step("profiles linux and gpu", async () => {
    const m = await readCompose(DEV, { env: {}, profiles: ["linux", "gpu"] });
    assert.equal(m.services.length, 9);
    const dcgm = m.services.find((s) => s.name === "dcgm-exporter")!;
    assert.equal(dcgm.runtime, "nvidia");
    assert.deepEqual(dcgm.profiles, ["gpu"]);
    assert.deepEqual(dcgm.ports, [9400]);
    assert.deepEqual(m.services.find((s) => s.name === "cadvisor")!.ports, [8085]);
  });
  await t.step("process env wins over defaults", async () => {
    const m = await readCompose(DEV, { env: { PROM_PORT: "9999", CORTEX_POSTGRES_PORT: "25432" } });
    assert.deepEqual(m.services.find((s) => s.name === "prometheus")!.ports, [9999]);
    assert.deepEqual(m.services.find((s) => s.name === "postgres")!.ports, [25432]);
  });
});

Deno.test("readCompose() on the real prod file", async (t) => {
  await t.step("services and unset variables", async () => {
    const m = await readCompose(PROD, { env: {} });
    assert.deepEqual(m.services.map((s) => [s.name, s.image]), [
      ["postgres", "postgres:16"],
      ["redis", "redis:7"],
      ["gateway", "your-registry/cortex-gateway:latest"],
    ]);
    assert.deepEqual(m.services[1].ports, [16379]);
    assert.deepEqual(m.unset, ["INTERNAL_VLLM_API_KEY"]);
  });
  await t.step("root .env beside the file is read; env wins over it", async () => {
    const dir = await Deno.makeTempDir({ prefix: "cit-compose-" });
    try {
      Deno.copyFileSync(PROD, `${dir}/docker.compose.prod.yaml`);
      Deno.writeTextFileSync(`${dir}/.env`, "CORTEX_REDIS_PORT=26379\nCORTEX_POSTGRES_PORT=1\n");
      const m = await readCompose(`${dir}/docker.compose.prod.yaml`, {
        env: { CORTEX_POSTGRES_PORT: "35432" },
      });
      assert.deepEqual(m.services.map((s) => s.ports), [[35432], [26379], []]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("missing file is a preflight error", async () => {
    await assert.rejects(
      readCompose(`${FIX}nope.yaml`),
      (e: unknown) =>
        e instanceof InstallError && e.exitCode === 3 && e.message.includes("nope.yaml"),
    );
  });
  await t.step("required variable error names the file", () => {
    assert.throws(
      () => parseCompose("x.yaml", "services:\n  a:\n    image: ${IMG:?set IMG}\n"),
      (e: unknown) =>
        e instanceof InstallError && /"x.yaml": required variable IMG/.test(e.message),
    );
  });
  await t.step("project name falls back to the folder name", () => {
    const m = parseCompose("/tmp/My Cortex/c.yaml", "services:\n  a:\n    image: x\n");
    assert.equal(m.project, "mycortex");
  });
});

Deno.test("builtImageName() per Compose major", () => {
  assert.equal(builtImageName("cortex", "gateway", 2), "cortex-gateway");
  assert.equal(builtImageName("cortex", "gateway", 1), "cortex_gateway");
});

const SHIPPED_SCRIPT = [
  "vllm/vllm-openai:v0.6.3",
  "postgres:16",
  "redis:7",
  "prom/prometheus:v2.47.0",
  "prom/node-exporter:v1.6.1",
  "nvidia/dcgm-exporter:3.1.8-3.1.5-ubuntu22.04",
  "gcr.io/cadvisor/cadvisor:v0.47.0",
].map((ref, i) => ({ ref, imageId: `sha256:${i}`, origin: "shipped" as const }));

Deno.test("planImages() against the real compose files", async (t) => {
  await t.step("dev with linux+gpu, admin-ui app images, compose v2", async () => {
    const m = await readCompose(DEV, { env: {}, profiles: ["linux", "gpu"] });
    const avail = [
      ...SHIPPED_SCRIPT,
      { ref: "cortex-gateway:latest", imageId: "sha256:gw", origin: "shipped" as const },
      { ref: "cortex-frontend:latest", imageId: "sha256:fe", origin: "shipped" as const },
      { ref: "docker.io/dpage/pgadmin4:8.7", imageId: "sha256:pga", origin: "present" as const },
    ];
    const p = planImages(m, avail, { composeMajor: 2 });
    assert.deepEqual(p.missing, []);
    const by = Object.fromEntries(p.needs.map((n) => [n.service, n]));
    assert.deepEqual(by["postgres"], {
      service: "postgres",
      ref: "postgres:16",
      source: "shipped",
      imageId: "sha256:1",
    });
    assert.deepEqual(by["gateway"], {
      service: "gateway",
      ref: "cortex-gateway:latest",
      source: "shipped",
      imageId: "sha256:gw",
    });
    assert.equal(by["pgadmin"].source, "present");
    assert.equal(by["pgadmin"].ref, "dpage/pgadmin4:8.7");
    assert.deepEqual(
      [by["prometheus"].source, by["prometheus"].ref, by["prometheus"].from],
      ["retag", "prom/prometheus:latest", "prom/prometheus:v2.47.0"],
    );
    assert.equal(by["dcgm-exporter"].from, "nvidia/dcgm-exporter:3.1.8-3.1.5-ubuntu22.04");
    assert.equal(by["cadvisor"].from, "gcr.io/cadvisor/cadvisor:v0.47.0");
    assert.equal(by["node-exporter"].from, "prom/node-exporter:v1.6.1");
  });
  await t.step(
    "dev without profiles, compose v1: built images retagged, pgadmin missing",
    async () => {
      const m = await readCompose(DEV, { env: {} });
      const avail = [
        ...SHIPPED_SCRIPT,
        { ref: "cortex-gateway:latest", imageId: "sha256:gw", origin: "shipped" as const },
      ];
      const p = planImages(m, avail, { composeMajor: 1 });
      const by = Object.fromEntries(p.needs.map((n) => [n.service, n]));
      assert.deepEqual(by["gateway"], {
        service: "gateway",
        ref: "cortex_gateway:latest",
        source: "retag",
        from: "cortex-gateway:latest",
        imageId: "sha256:gw",
      });
      assert.deepEqual(p.missing, [
        { service: "frontend", ref: "cortex_frontend:latest" },
        { service: "pgadmin", ref: "dpage/pgadmin4:8.7" },
      ]);
      assert.equal(p.needs.length, 4);
    },
  );
  await t.step("prod: registry-prefixed gateway retagged from the shipped app image", async () => {
    const m = await readCompose(PROD, { env: {} });
    const avail = [
      ...SHIPPED_SCRIPT,
      { ref: "cortex-gateway:latest", imageId: "sha256:gw", origin: "shipped" as const },
    ];
    const p = planImages(m, avail);
    assert.deepEqual(p.missing, []);
    assert.deepEqual(p.needs.map((n) => [n.service, n.source, n.from]), [
      ["postgres", "shipped", undefined],
      ["redis", "shipped", undefined],
      ["gateway", "retag", "cortex-gateway:latest"],
    ]);
  });
  await t.step("prod without a gateway image: missing", async () => {
    const p = planImages(await readCompose(PROD, { env: {} }), SHIPPED_SCRIPT);
    assert.deepEqual(p.missing, [{
      service: "gateway",
      ref: "your-registry/cortex-gateway:latest",
    }]);
  });
});

Deno.test("planImages() choices", async (t) => {
  const model = parseCompose("c.yaml", "name: p\nservices:\n  prom:\n    image: prom/prometheus\n");
  await t.step("several shipped tags: newest, deterministic, explained", () => {
    const avail = [
      { ref: "prom/prometheus:v2.9.0", imageId: "a", origin: "shipped" as const },
      { ref: "prom/prometheus:v2.47.0", imageId: "b", origin: "shipped" as const },
      { ref: "prom/prometheus:v2.10.1", imageId: "c", origin: "present" as const },
    ];
    for (const order of [avail, [...avail].reverse()]) {
      const [n] = planImages(model, order).needs;
      assert.equal(n.ref, "prom/prometheus:latest");
      assert.equal(n.from, "prom/prometheus:v2.47.0");
      assert.equal(
        n.note,
        "chose prom/prometheus:v2.47.0 of 2 shipped candidates (prom/prometheus:v2.47.0, prom/prometheus:v2.9.0)",
      );
    }
  });
  await t.step("shipped beats present for a retag; exact shipped beats exact present", () => {
    const avail = [
      { ref: "prom/prometheus:v3", imageId: "p", origin: "present" as const },
      { ref: "prom/prometheus:v2", imageId: "s", origin: "shipped" as const },
    ];
    assert.equal(planImages(model, avail).needs[0].from, "prom/prometheus:v2");
    const exact = [
      { ref: "prom/prometheus:latest", imageId: "p", origin: "present" as const },
      { ref: "docker.io/prom/prometheus:latest", imageId: "s", origin: "shipped" as const },
    ];
    assert.deepEqual(planImages(model, exact).needs[0], {
      service: "prom",
      ref: "prom/prometheus:latest",
      source: "shipped",
      imageId: "s",
    });
  });
  await t.step("upgrade: a shipped image beats the engine's exact ref of the old release", () => {
    const avail = [
      { ref: "prom/prometheus:latest", imageId: "old", origin: "present" as const },
      { ref: "prom/prometheus:v2.55.1", imageId: "new", origin: "shipped" as const },
    ];
    const [n] = planImages(model, avail).needs;
    assert.deepEqual([n.source, n.ref, n.from, n.imageId], [
      "retag",
      "prom/prometheus:latest",
      "prom/prometheus:v2.55.1",
      "new",
    ]);
    assert.match(n.note!, /not shipped by this bundle/);
    // Already retagged by an earlier run (same image ID): nothing to do.
    const again = [{ ...avail[0], imageId: "new" }, avail[1]];
    assert.deepEqual(planImages(model, again).needs[0], {
      service: "prom",
      ref: "prom/prometheus:latest",
      source: "present",
      imageId: "new",
    });
    // Nothing of that repository shipped: what the engine has is used.
    assert.equal(planImages(model, [avail[0]]).needs[0].source, "present");
  });
  await t.step("another repository never satisfies", () => {
    const avail = [{ ref: "prom/alertmanager:v1", imageId: "x", origin: "shipped" as const }];
    assert.deepEqual(planImages(model, avail).missing, [
      { service: "prom", ref: "prom/prometheus:latest" },
    ]);
  });
});
