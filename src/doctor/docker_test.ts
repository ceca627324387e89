import { assertEquals, assertMatch } from "../../test/support/assert.ts";
import {
  classifyDockerError,
  compareVersions,
  dockerChecks,
  type DockerFacts,
  dockerFacts,
  parseDockerInfo,
} from "./docker.ts";
import type { RunResult } from "./types.ts";

const td = (name: string) => Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));

Deno.test("parseDockerInfo() reads a real engine 20.10 docker info", () => {
  const i = parseDockerInfo(td("docker-info-20.10-root.json"));
  assertEquals(i.serverVersion, "20.10.24+dfsg1");
  assertEquals(i.clientVersion, "28.2.2");
  assertEquals(i.rootDir, "/var/lib/docker");
  assertEquals(i.runtimes, ["io.containerd.runc.v2", "io.containerd.runtime.v1.linux", "runc"]);
  assertEquals(i.defaultRuntime, "runc");
});

Deno.test("parseDockerInfo() tolerates the empty JSON of an unreachable daemon and garbage", () => {
  const i = parseDockerInfo(
    '{"ServerVersion":"","DockerRootDir":"","Runtimes":null,"ClientInfo":{"Version":"28.2.2"}}',
  );
  assertEquals(i, {
    serverVersion: undefined,
    clientVersion: "28.2.2",
    rootDir: undefined,
    runtimes: [],
    defaultRuntime: undefined,
    driver: undefined,
    os: undefined,
  });
  assertEquals(parseDockerInfo("not json").runtimes, []);
});

Deno.test("classifyDockerError() on recorded stderr", async (t) => {
  const cases: [string, number, string, string][] = [
    [
      "permission denied (non-root user)",
      1,
      td("docker-info-permission-denied.stderr.txt"),
      "permission",
    ],
    ["no daemon", 1, td("docker-info-no-daemon.stderr.txt"), "unreachable"],
    ["no CLI", 127, "docker: command not found", "cli-missing"],
    ["something else", 1, "Error response from daemon: boom", "other"],
  ];
  for (const [name, code, err, want] of cases) {
    await t.step(name, () => assertEquals(classifyDockerError(code, err), want));
  }
});

Deno.test("compareVersions() compares the leading numbers", async (t) => {
  const cases: [string, string, number][] = [
    ["20.10.24+dfsg1", "20.10", 1],
    ["19.03.15", "20.10", -1],
    ["v2.29.1", "2.29.1", 0],
    ["12.10", "12.4", 1],
    ["12.4", "12.4.0", 0],
  ];
  for (const [a, b, want] of cases) {
    await t.step(`${a} vs ${b}`, () => assertEquals(compareVersions(a, b), want));
  }
});

const base: DockerFacts = { cli: true, reachable: true, nvidiaRuntime: false };

Deno.test("dockerChecks() verdicts", async (t) => {
  await t.step("permission denied as a user: fail with the usermod fix", () => {
    const c = dockerChecks({ ...base, reachable: false, problem: "permission", uid: 1000 });
    assertEquals(c[0].status, "fail");
    assertMatch(c[0].detail, /uid 1000: permission denied/);
    assertMatch(c[0].hint ?? "", /sudo usermod -aG docker \$USER/);
    assertMatch(c[0].hint ?? "", /as root/);
  });
  await t.step("no compose: fail", () => {
    const c = dockerChecks({ ...base, info: { serverVersion: "24.0.7", runtimes: ["runc"] } });
    assertEquals(c.map((x) => [x.id, x.status]), [["docker.daemon", "ok"], [
      "docker.compose",
      "fail",
    ]]);
  });
  await t.step("old engine: warn", () => {
    const c = dockerChecks({
      ...base,
      info: { serverVersion: "19.03.1", runtimes: [] },
      compose: { cmd: ["docker", "compose"], version: "2.29.1", major: 2 },
    });
    assertEquals(c.map((x) => x.status), ["warn", "ok"]);
  });
  await t.step("no CLI: a single fail", () => {
    const c = dockerChecks({ ...base, cli: false, reachable: false });
    assertEquals(c.map((x) => [x.id, x.status]), [["docker.cli", "fail"]]);
  });
});

Deno.test("dockerFacts() with a recorded docker info and a fake compose", async () => {
  const run = (_c: string, _a: string[]): Promise<RunResult> =>
    Promise.resolve({ code: 0, stdout: td("docker-info-20.10-root.json"), stderr: "" });
  const f = await dockerFacts(
    run,
    () => Promise.resolve({ cmd: ["docker-compose"], version: "1.29.2", major: 1 as const }),
    0,
  );
  assertEquals(f.reachable, true);
  assertEquals(f.nvidiaRuntime, false);
  assertEquals(f.compose?.version, "1.29.2");
  const denied = await dockerFacts(
    () =>
      Promise.resolve({
        code: 1,
        stdout: "{}",
        stderr: td("docker-info-permission-denied.stderr.txt"),
      }),
    () => Promise.resolve(undefined),
    65534,
  );
  assertEquals([denied.reachable, denied.problem], [false, "permission"]);
});
