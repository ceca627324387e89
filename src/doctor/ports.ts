/**
 * Host ports the stack will bind: read from the compose file (or Cortex's defaults), then each
 * is tested: free, held by our own compose project, or held by something else (named when we
 * can find the process or container).
 */
import { DEFAULT_PORTS } from "../layout.ts";
import type { Check, Run } from "./types.ts";
import {
  composeInterpolate,
  composeYaml,
  expandRange,
  interpolate,
  parsePortEntry,
  portBudget,
} from "../host/compose.ts";
import { envRecord, parseEnv } from "../host/dotenv.ts";

/** Cortex's gateway runs on the host network and listens on 8084 (not declared in compose). */
export const GATEWAY_HOST_PORT = 8084;

/** A host port the stack wants. */
export interface PortWant {
  port: number;
  /** Host address it binds ("127.0.0.1"), or undefined for all addresses. */
  hostIp?: string;
  service?: string;
  /** Compose profiles the service needs; such a service only starts with them. */
  profiles?: string[];
  source: "compose" | "host-network" | "default";
}

export interface PortInfo extends PortWant {
  status: "free" | "ours" | "busy";
  /** Who holds it: "pid 812 (nginx)", `container "foo"`. */
  owner?: string;
}

/** Compose interpolation and `ports:` entries: the same code that reads compose files for install. */
export { interpolate, parsePortEntry } from "../host/compose.ts";

/**
 * Reads the host ports of a compose file (pure): every service's TCP `ports:` after
 * interpolation, plus 8084 for Cortex's gateway on the host network. Sorted by port.
 */
export function portsFromCompose(
  yamlText: string,
  env: (k: string) => string | undefined,
  file = "compose file",
): PortWant[] {
  // The installer's compose reading: YAML and interpolation errors are preflight errors. Only
  // `ports:` entries are interpolated (a secret the install will generate may be unset yet).
  const doc = composeYaml(file, yamlText) as
    | { services?: Record<string, Record<string, unknown>> }
    | null;
  const budget = portBudget(file);
  const wants: PortWant[] = [];
  const services =
    doc && typeof doc === "object" && doc.services && typeof doc.services === "object"
      ? doc.services
      : {};
  for (const [name, svc] of Object.entries(services)) {
    if (!svc || typeof svc !== "object") continue;
    const profiles = Array.isArray(svc.profiles) ? svc.profiles.map(String) : undefined;
    const base = { service: name, ...(profiles?.length ? { profiles } : {}) };
    if (svc.network_mode === "host") {
      const image = typeof svc.image === "string" ? svc.image : "";
      const ports = new Set(healthcheckPorts(svc.healthcheck, env));
      if (name === "gateway" || /cortex[-_]gateway/.test(image)) ports.add(GATEWAY_HOST_PORT);
      for (const port of ports) wants.push({ port, ...base, source: "host-network" });
      continue;
    }
    for (const entry of Array.isArray(svc.ports) ? svc.ports : []) {
      const p = parsePortEntry(composeInterpolate(file, entry, env));
      if (p.protocol !== "tcp") continue;
      for (const port of budget(p.ports)) {
        wants.push({ port, ...(p.hostIp ? { hostIp: p.hostIp } : {}), ...base, source: "compose" });
      }
    }
  }
  return wants.sort((a, b) => a.port - b.port);
}

/**
 * The loopback ports a host-network service's healthcheck probes (`wget http://127.0.0.1:18084/`,
 * `curl localhost:8084`): on the host network, that is a port the service binds on the host.
 */
export function healthcheckPorts(
  healthcheck: unknown,
  env: (k: string) => string | undefined,
): number[] {
  const test = (healthcheck as { test?: unknown } | null)?.test;
  const parts = Array.isArray(test) ? test : [test];
  // A part that does not interpolate (a `${VAR:?}` the install sets later) names no port yet.
  const text = parts.filter((p) => typeof p === "string").map((p) => {
    try {
      return interpolate(p, env);
    } catch {
      return "";
    }
  }).join(" ");
  const out: number[] = [];
  for (const m of text.matchAll(/(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):(\d{1,5})\b/g)) {
    const port = Number(m[1]);
    if (port > 0 && port < 65536 && !out.includes(port)) out.push(port);
  }
  return out;
}

/** Cortex's own ports when no compose file is given. */
export function defaultPortWants(): PortWant[] {
  return DEFAULT_PORTS.map((port) => ({ port, source: "default" as const }));
}

/** Parses a `.env` file for compose interpolation (with the settings step's parser). */
export function parseDotEnv(text: string): Record<string, string> {
  // Null prototype (envRecord): `${toString}` is an unset variable, not Object.prototype's.
  return envRecord(parseEnv(text));
}

/** A listening TCP socket from /proc/net/tcp{,6}. */
export interface ListenSocket {
  port: number;
  inode: number;
}

/** Parses `/proc/net/tcp` or `/proc/net/tcp6`: sockets in state LISTEN (0A) (pure). */
export function parseProcNetTcp(text: string): ListenSocket[] {
  const out: ListenSocket[] = [];
  for (const line of text.split(/\r?\n/).slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== "0A") continue;
    const port = parseInt(f[1].split(":")[1] ?? "", 16);
    const inode = Number(f[9]);
    if (Number.isFinite(port) && inode > 0) out.push({ port, inode });
  }
  return out;
}

/** A running container as `docker ps --format '{{json .}}'` prints it. */
export interface PsContainer {
  name: string;
  project?: string;
  service?: string;
  hostNetwork: boolean;
  /** Published host ports ("127.0.0.1:15432->5432/tcp"). */
  ports: number[];
}

/** Parses `docker ps --format '{{json .}}'` lines (pure). */
export function parseDockerPs(text: string): PsContainer[] {
  const out: PsContainer[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) continue;
    let j: Record<string, string>;
    try {
      j = JSON.parse(line);
    } catch {
      continue;
    }
    const labels = new Map<string, string>();
    for (const kv of (j.Labels ?? "").split(",")) {
      const i = kv.indexOf("=");
      if (i > 0) labels.set(kv.slice(0, i), kv.slice(i + 1));
    }
    const ports = new Set<number>();
    for (const m of (j.Ports ?? "").matchAll(/:(\d+)(?:-(\d+))?->/g)) {
      for (const p of expandRange(m[2] ? `${m[1]}-${m[2]}` : m[1])) ports.add(p);
    }
    out.push({
      name: j.Names ?? "",
      project: labels.get("com.docker.compose.project"),
      service: labels.get("com.docker.compose.service"),
      hostNetwork: (j.Networks ?? "").split(",").includes("host"),
      ports: [...ports].sort((a, b) => a - b),
    });
  }
  return out;
}

/** Decides who holds a busy port (pure). */
export function classifyBusy(
  want: PortWant,
  containers: PsContainer[],
  project: string,
): { ours: boolean; owner?: string } {
  for (const c of containers) {
    if (c.ports.includes(want.port)) {
      return { ours: c.project === project, owner: `container "${c.name}"` };
    }
  }
  if (want.source === "host-network") {
    const c = containers.find((c) =>
      c.project === project && c.hostNetwork && (!want.service || c.service === want.service)
    );
    if (c) return { ours: true, owner: `container "${c.name}" (host network)` };
  }
  return { ours: false };
}

export type ListenResult = "free" | "in-use" | "denied";

export interface PortDeps {
  /** Tries to bind host:port and closes at once. */
  listen(hostname: string, port: number): ListenResult;
  run: Run;
  /** Who listens on a port: "pid 812 (nginx)"; undefined when unknown. */
  processOf(port: number): Promise<string | undefined>;
}

/** Binds and closes; AddrInUse means someone holds the port. */
export function tryListen(hostname: string, port: number): ListenResult {
  try {
    const l = Deno.listen({ hostname, port, transport: "tcp" });
    l.close();
    return "free";
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) return "in-use";
    if (e instanceof Deno.errors.PermissionDenied) return "denied";
    // An address this host does not have (EADDRNOTAVAIL) cannot be in use by anyone.
    return "free";
  }
}

/** Finds the process that listens on `port` through /proc/net/tcp{,6} and /proc/<pid>/fd. */
export async function procProcessOf(port: number): Promise<string | undefined> {
  const inodes = new Set<number>();
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    try {
      for (const s of parseProcNetTcp(await Deno.readTextFile(f))) {
        if (s.port === port) inodes.add(s.inode);
      }
    } catch { /* not Linux, or no IPv6 */ }
  }
  if (inodes.size === 0) return undefined;
  try {
    for await (const e of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        for await (const fd of Deno.readDir(`/proc/${e.name}/fd`)) {
          const link = await Deno.readLink(`/proc/${e.name}/fd/${fd.name}`).catch(() => "");
          const m = link.match(/^socket:\[(\d+)\]$/);
          if (m && inodes.has(Number(m[1]))) {
            const comm = (await Deno.readTextFile(`/proc/${e.name}/comm`).catch(() => "")).trim();
            return `pid ${e.name}${comm ? ` (${comm})` : ""}`;
          }
        }
      } catch { /* another user's process, or gone */ }
    }
  } catch { /* no /proc */ }
  return undefined;
}

/**
 * Tests each wanted port: a bind on its host address (and on 0.0.0.0 and 127.0.0.1, since a
 * wildcard or loopback holder blocks both). A busy port held by our compose project is "ours".
 */
export async function checkPorts(
  wants: PortWant[],
  project: string,
  deps: PortDeps,
): Promise<PortInfo[]> {
  const out: PortInfo[] = [];
  let containers: PsContainer[] | undefined;
  for (const w of wants) {
    const hosts = [...new Set([w.hostIp ?? "0.0.0.0", "0.0.0.0", "127.0.0.1"])];
    const busy = hosts.some((h) => deps.listen(h, w.port) === "in-use");
    if (!busy) {
      out.push({ ...w, status: "free" });
      continue;
    }
    if (!containers) {
      const r = await deps.run("docker", ["ps", "--no-trunc", "--format", "{{json .}}"], {
        timeoutMs: 15_000,
      });
      containers = r.code === 0 ? parseDockerPs(r.stdout) : [];
    }
    const c = classifyBusy(w, containers, project);
    const owner = c.owner ?? await deps.processOf(w.port);
    out.push({ ...w, status: c.ours ? "ours" : "busy", ...(owner ? { owner } : {}) });
  }
  return out;
}

/** Turns port results into one check (pure). Busy ports of profile-only services only warn. */
export function portChecks(ports: PortInfo[], project: string): Check[] {
  const busy = ports.filter((p) => p.status === "busy");
  const hard = busy.filter((p) => !p.profiles?.length);
  const describe = (p: PortInfo) =>
    `${p.hostIp ? `${p.hostIp}:` : ""}${p.port}${p.service ? ` (${p.service})` : ""} is held by ${
      p.owner ?? "another process"
    }${p.profiles?.length ? ` [profile ${p.profiles.join(",")}]` : ""}`;
  if (busy.length === 0) {
    const ours = ports.filter((p) => p.status === "ours").map((p) => p.port);
    return [{
      id: "ports",
      title: "Ports",
      status: "ok",
      detail: `${ports.map((p) => p.port).join(", ") || "none"} free` +
        (ours.length ? ` (${ours.join(", ")} held by the running "${project}" stack)` : ""),
    }];
  }
  return [{
    id: "ports",
    title: "Ports",
    status: hard.length ? "fail" : "warn",
    detail: `Cannot bind the stack's ports: ${busy.map(describe).join("; ")}`,
    hint: "Stop what holds them, or move Cortex: set CORTEX_POSTGRES_PORT / CORTEX_REDIS_PORT / " +
      "PROM_PORT / FRONTEND_PORT in the .env beside the compose file",
  }];
}
