import { assert, assertEquals, assertMatch, assertThrows } from "../../test/support/assert.ts";
import { InstallError } from "../errors.ts";
import {
  isConcreteVersion,
  loadReleaseManifest,
  loadReleasePolicies,
  parseReleasePolicies,
  pinsFor,
  policyForLine,
  readinessUrl,
  refusedComposeFile,
  releaseLine,
  type ReleaseManifest,
  type ReleasePolicies,
  selectPolicy,
} from "./release.ts";

const EMBEDDED = await loadReleasePolicies();
const HEX = (c: string) => c.repeat(64);

Deno.test("the embedded policy set has one policy per release line, 0.1 unchanged", async () => {
  assertEquals(EMBEDDED.single, false);
  assertEquals(EMBEDDED.lines.map((l) => [l.line, l.release]), [["0.1", "0.1.1"], [
    "0.2",
    "0.2.0",
  ]]);
  const v01 = policyForLine(EMBEDDED, "0.1")!;
  assertEquals(v01.settings.mode, "backend-env");
  assertEquals(v01.compose.run, undefined);
  assertEquals(v01.env.offline.OFFLINE_MODE, "True");
  // loadReleaseManifest() (install, rollback) still gets the 0.1 policy.
  assertEquals((await loadReleaseManifest()).release, "0.1.1");
});

Deno.test("the 0.2 policy says what cortex-0.2-facts says", () => {
  const p = policyForLine(EMBEDDED, "0.2")!;
  assertEquals(p.settings.mode, "root-env");
  assertEquals(p.compose.run, "docker.compose.prod.yaml");
  assertEquals(p.env.secrets, ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"]);
  assertEquals(p.roles, { engine: true, program: true, deps: false, infra: false });
  const crit = Object.fromEntries(p.images.map((i) => [i.repository, i.critical]));
  assertEquals(crit["cortex-frontend"], true);
  assertEquals(crit["cortex-gateway-deps"], false);
  assertEquals(crit["prom/prometheus"], true);
  assertEquals(crit["nvidia/dcgm-exporter"], false);
  assertEquals(
    p.readiness.map((r) => [r.service, r.url, r.portKey ?? null]),
    [
      ["gateway", "http://127.0.0.1:8084/health", null],
      ["prometheus", "http://127.0.0.1:19090/-/ready", "PROM_PORT"],
      ["frontend", "http://127.0.0.1:3001/login", "FRONTEND_PORT"],
    ],
  );
  assertEquals(p.readiness[0].expectJson, { status: "ok" });
  assertEquals(p.ports.find((x) => x.service === "prometheus"), {
    service: "prometheus",
    port: 19090,
    key: "PROM_PORT",
  });
});

Deno.test("a schema 1 file is one policy that serves every line (--manifest)", () => {
  const p = parseReleasePolicies(
    JSON.stringify({
      schema: 1,
      release: "0.0.0-test",
      images: [],
      env: { offline: {}, online: {}, paths: {} },
      readiness: [],
    }),
    "mine.json",
  );
  assertEquals(p.single, true);
  assertEquals(policyForLine(p, "0.2")?.release, "0.0.0-test");
  assertEquals(p.lines[0].settings.mode, "backend-env");
  const c = selectPolicy(p, { version: "0.2.0", layoutLine: "0.2", source: "bundle.json" });
  assertEquals(c.policy.release, "0.0.0-test");
  assertEquals(c.line, "0.2");
});

Deno.test("parseReleasePolicies() refuses a set that lists a line twice or a bad line", () => {
  const line = {
    line: "0.2",
    release: "0.2.0",
    images: [],
    env: { offline: {}, online: {}, paths: {} },
    readiness: [],
  };
  const e = assertThrows(
    () => parseReleasePolicies(JSON.stringify({ schema: 2, lines: [line, line] }), "x.json"),
    InstallError,
    /x\.json.*each release line may appear once/,
  );
  assertEquals(e.exitCode, 3);
  assertThrows(
    () =>
      parseReleasePolicies(
        JSON.stringify({ schema: 2, lines: [{ ...line, line: "two" }] }),
        "x.json",
      ),
    InstallError,
    /lines\.0\.line/,
  );
});

Deno.test("releaseLine() and isConcreteVersion()", () => {
  assertEquals(releaseLine("0.2.0"), "0.2");
  assertEquals(releaseLine("v0.1.1"), "0.1");
  assertEquals(releaseLine("0.1.1-demo"), "0.1");
  assertEquals(releaseLine("dev"), undefined);
  assertEquals(releaseLine(""), undefined);
  assertEquals(releaseLine(undefined), undefined);
  assert(!isConcreteVersion("latest"));
});

Deno.test("selectPolicy(): who decides the release line", async (t) => {
  const b = (version: string | undefined, layoutLine: string | undefined = "0.2") => ({
    version,
    layoutLine,
    source: "bundle.json",
  });
  const c = (version?: string, line?: string) => ({ version, line, source: "versions.env" });
  const cases: {
    name: string;
    bundle: ReturnType<typeof b>;
    checkout?: ReturnType<typeof c>;
    line?: string;
    version?: string;
    by?: string;
    error?: RegExp;
    warns?: RegExp;
  }[] = [
    {
      name: "both say 0.2.0",
      bundle: b("0.2.0"),
      checkout: c("0.2.0"),
      line: "0.2",
      version: "0.2.0",
      by: "both",
    },
    {
      name: "bundle only (verify, load: no checkout)",
      bundle: b("0.2.0"),
      line: "0.2",
      version: "0.2.0",
      by: "bundle",
    },
    {
      name: "bundle says dev: the checkout's version wins, with a warning",
      bundle: b("dev"),
      checkout: c("0.2.0"),
      line: "0.2",
      version: "0.2.0",
      by: "checkout",
      warns: /cortex_version "dev".*checkout's Cortex 0\.2\.0/,
    },
    {
      name: "bundle dev, no checkout: the layout decides",
      bundle: b("dev"),
      line: "0.2",
      by: "layout",
    },
    {
      name: "0.1 package without a version and a 0.1 checkout",
      bundle: b(undefined, "0.1"),
      checkout: c(undefined, "0.1"),
      line: "0.1",
      by: "layout",
    },
    {
      name: "two concrete versions that differ",
      bundle: b("0.2.0"),
      checkout: c("0.2.1"),
      error: /Cortex 0\.2\.0 \(bundle\.json\) into a checkout of Cortex 0\.2\.1 \(versions\.env\)/,
    },
    {
      name: "a 0.2 bundle (dev) and a 0.1 checkout",
      bundle: b("dev"),
      checkout: c(undefined, "0.1"),
      error: /Cortex 0\.2\.x bundle .* Cortex 0\.1\.x checkout/,
    },
    {
      name: "a bundle.json that claims 0.1",
      bundle: b("0.1.1"),
      error: /bundle\.json says Cortex 0\.1\.1, but its layout is Cortex 0\.2's/,
    },
    {
      name: "a line no policy serves",
      bundle: b("0.3.0"),
      error: /Cortex 0\.3\.0: embedded manifest has policies for 0\.1\.x, 0\.2\.x only/,
    },
  ];
  for (const x of cases) {
    await t.step(x.name, () => {
      if (x.error) {
        const e = assertThrows(() => selectPolicy(EMBEDDED, x.bundle, x.checkout), InstallError);
        assertMatch(e.message, x.error);
        assertEquals(e.exitCode, 3);
        return;
      }
      const r = selectPolicy(EMBEDDED, x.bundle, x.checkout);
      assertEquals(r.line, x.line);
      assertEquals(r.policy.line, x.line);
      assertEquals(r.version, x.version);
      assertEquals(r.decidedBy, x.by);
      if (x.warns) assert(r.warnings.some((w) => x.warns!.test(w)), r.warnings.join("|"));
      else assertEquals(r.warnings, []);
    });
  }
});

Deno.test("pinsFor(): every line's pins apply; the chosen line's win", () => {
  const set: ReleasePolicies = {
    ...EMBEDDED,
    lines: EMBEDDED.lines.map((l): ReleaseManifest =>
      l.line === "0.1"
        ? { ...l, pins: { "postgres-16.tar": HEX("a"), "images/x.tar": HEX("b") } }
        : { ...l, pins: { "images/x.tar": HEX("c") } }
    ),
  };
  const p02 = policyForLine(set, "0.2")!;
  assertEquals(pinsFor(set, p02), { "postgres-16.tar": HEX("a"), "images/x.tar": HEX("c") });
});

Deno.test("readinessUrl() moves the port by its key, ignores bad values", () => {
  const r = { service: "prometheus", url: "http://127.0.0.1:19090/-/ready", portKey: "PROM_PORT" };
  assertEquals(readinessUrl(r, () => "29090"), "http://127.0.0.1:29090/-/ready");
  assertEquals(readinessUrl(r, () => undefined), r.url);
  assertEquals(readinessUrl(r, () => "99999"), r.url);
  assertEquals(readinessUrl(r, () => "abc"), r.url);
  assertEquals(
    readinessUrl({ service: "g", url: "http://127.0.0.1:8084/health" }, () => "1"),
    "http://127.0.0.1:8084/health",
  );
});

Deno.test("refusedComposeFile(): 0.2 refuses its dev file and says why; 0.1 refuses none", () => {
  const p02 = policyForLine(EMBEDDED, "0.2")!;
  assertMatch(
    refusedComposeFile(p02, "/srv/Cortex/docker.compose.dev.yaml")!,
    /prod-target images.*built from source/,
  );
  assertEquals(refusedComposeFile(p02, "/srv/Cortex/docker.compose.prod.yaml"), undefined);
  assertEquals(
    refusedComposeFile(policyForLine(EMBEDDED, "0.1")!, "docker.compose.dev.yaml"),
    undefined,
  );
});
