import { assertEquals, assertMatch } from "../../test/support/assert.ts";
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

Deno.test("detectNetwork() bounds a hanging probe by what is left of the total budget", async () => {
  const calls: string[] = [];
  const given: number[] = [];
  const p = probes({ connect: "hang" }, calls);
  // On a fake clock, route and dns take 120 ms each of the 300 ms budget: connect (which never
  // answers) gets the 60 ms left, and the budget cuts it there.
  let t = 0;
  const timed: NetworkProbes = {
    route: (ms) => (given.push(ms), t += 120, p.route(ms)),
    dns: (host, ms) => (given.push(ms), t += 120, p.dns(host, ms)),
    connect: (host, port, ms) => (given.push(ms), p.connect(host, port, ms)),
  };
  const n = await detectNetwork(timed, undefined, 300, () => t);
  assertEquals(n.mode, "offline");
  assertMatch(n.reason, /cannot connect.*no answer within/);
  assertEquals([calls, given], [["route", "dns", "connect"], [300, 180, 60]]);
  assertMatch(n.reason, /no answer within 60 ms/);
});
