import { assertEquals, assertMatch } from "../../test/support/assert.ts";
import {
  checkDisk,
  diskChecks,
  GiB,
  groupDisk,
  nearestExisting,
  parseDf,
  withMargin,
} from "./disk.ts";

const td = (name: string) => Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));

Deno.test("parseDf() reads df -B1 --output=avail,target", () => {
  assertEquals(parseDf(td("df-two-paths.txt")), [
    { avail: 84071616512, target: "/var/lib/docker" },
    { avail: 84071616512, target: "/" },
  ]);
  assertEquals(parseDf("      Avail Mounted on\n  123 /mnt/with space\n"), [{
    avail: 123,
    target: "/mnt/with space",
  }]);
});

Deno.test("withMargin() adds 10% and 1 GiB", () => {
  assertEquals(withMargin(0), 0);
  assertEquals(withMargin(10 * GiB), 12 * GiB);
});

Deno.test("nearestExisting() walks up to an existing parent", async () => {
  const exists = new Map([["/", 1], ["/var", 2]]);
  const stat = (p: string) => Promise.resolve(exists.has(p) ? { dev: exists.get(p)! } : undefined);
  assertEquals(await nearestExisting("/var/cortex/models/", stat), { path: "/var", dev: 2 });
  assertEquals(await nearestExisting("/opt/x", stat), { path: "/", dev: 1 });
});

Deno.test("groupDisk() sums per filesystem and fails when short", () => {
  const free = new Map([[1, { avail: 20 * GiB, target: "/" }], [2, {
    avail: 100 * GiB,
    target: "/data",
  }]]);
  const g = groupDisk([
    {
      what: "docker data root",
      path: "/var/lib/docker",
      bytes: 8 * GiB,
      existing: "/var/lib/docker",
      dev: 1,
    },
    { what: "models dir", path: "/var/cortex/models", bytes: 10 * GiB, existing: "/var", dev: 1 },
    { what: "state dir", path: "/data/state", bytes: 0, existing: "/data", dev: 2 },
  ], free);
  assertEquals(g.map((x) => [x.mount, x.needBytes, x.ok]), [["/", 18 * GiB, false], [
    "/data",
    0,
    true,
  ]]);
  const c = diskChecks(g);
  assertEquals(c.map((x) => x.status), ["fail", "ok"]);
  assertMatch(
    c[0].detail,
    /Not enough space on \/: needs 18\.0 GiB .*free 20\.0 GiB: docker data root .*models dir/,
  );
});

Deno.test("checkDisk() asks df once per filesystem", async () => {
  const calls: string[][] = [];
  const needs = await checkDisk(
    [
      { what: "models dir", path: "/m/models", bytes: GiB },
      { what: "state dir", path: "/s", bytes: 0 },
    ],
    {
      stat: (p) =>
        Promise.resolve(
          p === "/m" ? { dev: 5 } : p === "/s" ? { dev: 6 } : p === "/" ? { dev: 1 } : undefined,
        ),
      run: (_c, args) => {
        calls.push(args);
        return Promise.resolve({
          code: 0,
          stdout: "Avail Mounted on\n500 /m\n999999999999 /s\n",
          stderr: "",
        });
      },
    },
  );
  assertEquals(calls, [["-B1", "--output=avail,target", "/m", "/s"]]);
  assertEquals(needs.map((n) => [n.mount, n.freeBytes, n.ok]), [["/m", 500, false], [
    "/s",
    999999999999,
    true,
  ]]);
});

Deno.test("checkDisk() on this machine: real stat and df", async () => {
  const { statDev } = await import("./disk.ts");
  const { runCommand } = await import("../docker.ts");
  const dir = await Deno.makeTempDir();
  try {
    const needs = await checkDisk(
      [{ what: "models dir", path: `${dir}/not/yet/there`, bytes: 1 }],
      { stat: statDev, run: (c, a) => runCommand(c, a) },
    );
    assertEquals(needs.length, 1);
    assertEquals(needs[0].items[0].existing, dir);
    assertEquals(typeof needs[0].freeBytes, "number");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
