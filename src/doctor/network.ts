/**
 * Offline or online, decided within a fixed budget (3 s in total): a default route, DNS of the
 * registry host, then a TCP connect to it on 443. Each probe is injectable so that tests never
 * send traffic; a probe is skipped once an earlier one failed.
 */
import type { Check, Run } from "./types.ts";

export const REGISTRY_HOST = "registry-1.docker.io";
export const REGISTRY_PORT = 443;
export const NETWORK_BUDGET_MS = 3000;

export interface Probe {
  name: "route" | "dns" | "connect";
  ok: boolean;
  detail: string;
  ms: number;
}

export interface NetworkInfo {
  mode: "offline" | "online";
  reason: string;
  /** Whether --offline/--online decided, not the probes. */
  forced: boolean;
  probes: Probe[];
}

/** Result of one probe function: ok plus a short detail. */
export interface ProbeResult {
  ok: boolean;
  detail: string;
}

/** The probes, each given the time it may take (ms). */
export interface NetworkProbes {
  route(timeoutMs: number): Promise<ProbeResult>;
  dns(host: string, timeoutMs: number): Promise<ProbeResult>;
  connect(host: string, port: number, timeoutMs: number): Promise<ProbeResult>;
}

/**
 * Whether `/proc/net/route` has a usable default route: destination 00000000 with the RTF_UP
 * flag (0x1). Returns the interface name, or undefined.
 */
export function parseProcNetRoute(text: string): string | undefined {
  for (const line of text.split(/\r?\n/).slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dest, , flags, , , , mask] = f;
    if (dest === "00000000" && mask === "00000000" && (parseInt(flags, 16) & 0x1) === 1) {
      return iface;
    }
  }
  return undefined;
}

/** Whether `ip route show default` printed a default route ("default via 192.0.2.1 dev eth0"). */
export function parseIpRouteDefault(text: string): string | undefined {
  const m = text.match(/^default\b.*?\bdev\s+(\S+)/m);
  return m ? m[1] : /^default\b/m.test(text) ? "?" : undefined;
}

/** Decides offline/online from probe results (pure); a forced mode wins. */
export function decideNetwork(
  forced: "offline" | "online" | undefined,
  probes: Probe[],
): NetworkInfo {
  if (forced) {
    return { mode: forced, reason: `forced by --${forced}`, forced: true, probes };
  }
  const failed = probes.find((p) => !p.ok);
  if (failed) {
    const why = {
      route: "no default route",
      dns: `cannot resolve ${REGISTRY_HOST}`,
      connect: `cannot connect to ${REGISTRY_HOST}:${REGISTRY_PORT}`,
    }[failed.name];
    return { mode: "offline", reason: `${why} (${failed.detail})`, forced: false, probes };
  }
  if (!probes.some((p) => p.name === "connect")) {
    return { mode: "offline", reason: "the registry was not reached", forced: false, probes };
  }
  return {
    mode: "online",
    reason: `reached ${REGISTRY_HOST}:${REGISTRY_PORT}`,
    forced: false,
    probes,
  };
}

/** Times out a promise: resolves to `onTimeout` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, onTimeout: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<T>((res) => {
    timer = setTimeout(() => res(onTimeout), Math.max(0, ms));
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** The real probes: /proc/net/route (then `ip route`), Deno.resolveDns, Deno.connect. */
export function realProbes(run: Run): NetworkProbes {
  return {
    async route(timeoutMs) {
      try {
        const iface = parseProcNetRoute(await Deno.readTextFile("/proc/net/route"));
        return iface
          ? { ok: true, detail: `default route via ${iface}` }
          : { ok: false, detail: "/proc/net/route has no default route" };
      } catch {
        const r = await run("ip", ["route", "show", "default"], { timeoutMs });
        const iface = r.code === 0 ? parseIpRouteDefault(r.stdout) : undefined;
        return iface
          ? { ok: true, detail: `default route via ${iface}` }
          : { ok: false, detail: "ip route shows no default route" };
      }
    },
    async dns(host, timeoutMs) {
      try {
        const addrs = await Deno.resolveDns(host, "A", { signal: AbortSignal.timeout(timeoutMs) });
        return addrs.length > 0
          ? { ok: true, detail: `${host} is ${addrs[0]}` }
          : { ok: false, detail: `no A record for ${host}` };
      } catch (e) {
        const msg = e instanceof Error
          ? e.name === "TimeoutError" || e.name === "AbortError"
            ? `no answer within ${timeoutMs} ms`
            : /no records found/i.test(e.message)
            ? `no A record for ${host}`
            : e.message.split("\n")[0].slice(0, 120)
          : String(e);
        return { ok: false, detail: msg };
      }
    },
    async connect(host, port, timeoutMs) {
      const attempt = Deno.connect({ hostname: host, port }).then(
        (c) => ({ conn: c as Deno.Conn | undefined, err: undefined as string | undefined }),
        (e) => ({ conn: undefined, err: e instanceof Error ? e.message : String(e) }),
      );
      const r = await within(attempt, timeoutMs, {
        conn: undefined,
        err: `no answer within ${timeoutMs} ms`,
      });
      if (r.conn) {
        r.conn.close();
        return { ok: true, detail: `connected to ${host}:${port}` };
      }
      // A connect still pending after the timeout is closed when it settles.
      attempt.then((late) => late.conn?.close()).catch(() => {});
      return { ok: false, detail: r.err ?? "failed" };
    },
  };
}

/**
 * Detects offline/online within `budgetMs` in total. With `forced`, no probe runs at all.
 * The probes run one after another, each given what is left of the budget.
 */
export async function detectNetwork(
  probes: NetworkProbes,
  forced?: "offline" | "online",
  budgetMs = NETWORK_BUDGET_MS,
  now: () => number = () => performance.now(),
): Promise<NetworkInfo> {
  if (forced) return decideNetwork(forced, []);
  const start = now();
  const left = () => Math.max(0, budgetMs - (now() - start));
  const done: Probe[] = [];
  const step = async (name: Probe["name"], f: (ms: number) => Promise<ProbeResult>) => {
    const t0 = now();
    const ms = left();
    const r = ms <= 0
      ? { ok: false, detail: "no time left in the probe budget" }
      : await within(f(ms), ms, { ok: false, detail: `no answer within ${Math.round(ms)} ms` });
    done.push({ name, ok: r.ok, detail: r.detail, ms: Math.round(now() - t0) });
    return r.ok;
  };
  (await step("route", (ms) => probes.route(ms))) &&
    (await step("dns", (ms) => probes.dns(REGISTRY_HOST, ms))) &&
    (await step("connect", (ms) => probes.connect(REGISTRY_HOST, REGISTRY_PORT, ms)));
  return decideNetwork(undefined, done);
}

/** The network check: a fact, never a failure (the install writes the matching keys). */
export function networkChecks(n: NetworkInfo): Check[] {
  return [{
    id: "network",
    title: "Network",
    status: "ok",
    detail: `${n.mode}: ${n.reason}`,
    hint: n.forced ? undefined : `Override with --offline or --online`,
  }];
}
