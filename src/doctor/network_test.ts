import { assert, assertEquals, assertMatch } from "../../test/support/assert.ts";
import {
  decideNetwork,
  detectNetwork,
  type NetworkProbes,
  parseIpRouteDefault,
  parseProcNetRoute,
  type Probe,
} from "./network.ts";

const td = (name: string) => Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));

Deno.test("parseProcNetRoute() finds the default route", () => {
  assertEquals(parseProcNetRoute(td("proc-net-route-default.txt")), "eth0");
  assertEquals(parseProcNetRoute(td("proc-net-route-no-default.txt")), undefined);
});

Deno.test("parseIpRouteDefault()", () => {
  assertEquals(
    parseIpRouteDefault("default via 192.0.2.1 dev ens3 proto dhcp metric 100\n"),
    "ens3",
  );
  assertEquals(parseIpRouteDefault(""), undefined);
});

const p = (name: Probe["name"], ok: boolean): Probe => ({ name, ok, detail: "x", ms: 1 });

Deno.test("decideNetwork() decision table", async (t) => {
  const cases: [string, "offline" | "online" | undefined, Probe[], string, RegExp][] = [
    ["forced offline", "offline", [], "offline", /^forced by --offline$/],
    ["forced online", "online", [], "online", /^forced by --online$/],
    ["no route", undefined, [p("route", false)], "offline", /no default route/],
    [
      "no DNS",
      undefined,
      [p("route", true), p("dns", false)],
      "offline",
      /cannot resolve registry-1/,
    ],
    [
      "no connect",
      undefined,
      [p("route", true), p("dns", true), p("connect", false)],
      "offline",
      /cannot connect/,
    ],
    [
      "all ok",
      undefined,
      [p("route", true), p("dns", true), p("connect", true)],
      "online",
      /reached/,
    ],
  ];
  for (const [name, forced, probes, mode, reason] of cases) {
    await t.step(name, () => {
      const n = decideNetwork(forced, probes);
      assertEquals(n.mode, mode);
      assertMatch(n.reason, reason);
    });
  }
});

function probes(
  o: Partial<Record<"route" | "dns" | "connect", boolean | "hang">>,
  calls: string[],
): NetworkProbes {
  const answer = (name: string, v: boolean | "hang" | undefined) => {
    calls.push(name);
    if (v === "hang") return new Promise<never>(() => {}); // never settles
    return Promise.resolve({ ok: v ?? true, detail: name });
  };
  return {
    route: () => answer("route", o.route),
    dns: () => answer("dns", o.dns),
    connect: () => answer("connect", o.connect),
  };
}

Deno.test("detectNetwork() stops at the first failed probe and never probes when forced", async () => {
  const calls: string[] = [];
  const n = await detectNetwork(probes({ route: false }, calls));
  assertEquals([n.mode, calls], ["offline", ["route"]]);
  const forcedCalls: string[] = [];
  const f = await detectNetwork(probes({}, forcedCalls), "online");
  assertEquals([f.mode, f.reason, forcedCalls], ["online", "forced by --online", []]);
  const allCalls: string[] = [];
  const a = await detectNetwork(probes({}, allCalls));
  assertEquals([a.mode, allCalls], ["online", ["route", "dns", "connect"]]);
});

Deno.test("detectNetwork() bounds a hanging probe by the total budget", async () => {
  const calls: string[] = [];
  const t0 = performance.now();
  const n = await detectNetwork(probes({ connect: "hang" }, calls), undefined, 300);
  const took = performance.now() - t0;
  assertEquals(n.mode, "offline");
  assertMatch(n.reason, /cannot connect.*no answer within/);
  // Not a timing assertion of speed: only that the budget cut the hang (which never ends).
  assert(took < 3000, `took ${took} ms`);
});
