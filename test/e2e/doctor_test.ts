/**
 * The doctor as a user runs it (`deno run -A main.ts doctor --json`), checked against what this
 * test finds out by itself on this host: the engine's version (`docker info`), the GPUs
 * (`nvidia-smi -L` on PATH), the network (a default route, a DNS lookup and a TCP connect to the
 * registry), and the ports of Cortex's compose file as `docker compose config` resolves them,
 * one of them held by this test. It passes on a GPU host or an online one, and fails when a
 * detection is wrong. Network probes stay on this host's resolver; a connect is only tried when
 * DNS answered.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { runCli } from "../support/fixtures.ts";
import { runCommand } from "../../src/docker.ts";
import type { DoctorReport } from "../../src/doctor/mod.ts";

const COMPOSE = new URL("../testdata/cortex-v0.1.1/docker.compose.prod.yaml", import.meta.url)
  .pathname;
const REGISTRY = "registry-1.docker.io";

type Doctor = DoctorReport & { command: string; exitCode: number };

/** What this host has, found without the code under test. */
async function gpusHere(): Promise<{ state: string; count: number }> {
  const r = await runCommand("nvidia-smi", ["-L"]);
  if (r.code === 127) return { state: "none", count: 0 };
  if (r.code !== 0) return { state: "driver-failed", count: 0 };
  return { state: "ok", count: r.stdout.split("\n").filter((l) => /^GPU \d+:/.test(l)).length };
}

async function networkHere(): Promise<"online" | "offline"> {
  const route = await Deno.readTextFile("/proc/net/route").catch(() => "");
  const hasDefault = route.split("\n").slice(1).some((l) => l.split(/\s+/)[1] === "00000000");
  if (!hasDefault) return "offline";
  const addrs = await Deno.resolveDns(REGISTRY, "A", { signal: AbortSignal.timeout(2500) })
    .catch(() => [] as string[]);
  if (addrs.length === 0) return "offline";
  try {
    const c = await Promise.race([
      Deno.connect({ hostname: addrs[0], port: 443 }),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error("timeout")), 2500)),
    ]);
    c.close();
    return "online";
  } catch {
    return "offline";
  }
}

/** Host ports the compose file publishes as compose itself resolves it, plus the host-network gateway's. */
async function composePorts(env: Record<string, string>): Promise<number[]> {
  const r = await runCommand("docker", ["compose", "-f", COMPOSE, "config", "--format", "json"], {
    env,
  });
  assertEquals(r.code, 0, r.stderr);
  const cfg = JSON.parse(r.stdout) as {
    services: Record<string, { network_mode?: string; ports?: { published?: string }[] }>;
  };
  const ports: number[] = [];
  for (const [name, s] of Object.entries(cfg.services)) {
    if (s.network_mode === "host" && name === "gateway") ports.push(8084);
    for (const p of s.ports ?? []) if (p.published) ports.push(Number(p.published));
  }
  return ports.sort((a, b) => a - b);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Whether this test can bind the port on all addresses now (what "free" means for the doctor). */
function bindable(port: number): boolean {
  try {
    Deno.listen({ port }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "doctor --json reports this host as the test itself finds it",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // The compose file's postgres port is one this test holds; redis's is free.
    const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const heldPort = (held.addr as Deno.NetAddr).port;
    const env = { CORTEX_POSTGRES_PORT: String(heldPort), CORTEX_REDIS_PORT: String(freePort()) };
    try {
      const [gpu, network, ports, engine] = await Promise.all([
        gpusHere(),
        networkHere(),
        composePorts(env),
        runCommand("docker", ["info", "--format", "{{.ServerVersion}}"]),
      ]);
      const r = await runCli(["doctor", "--compose-file", COMPOSE, "--json"], { env });
      const j = JSON.parse(r.stdout) as Doctor;
      assertEquals(j.command, "doctor");
      const byId = new Map(j.checks.map((c) => [c.id, c]));

      // Docker: the engine the test reached, at the version it reports.
      assertEquals(engine.code, 0, engine.stderr);
      assertEquals(j.docker.reachable, true);
      assertEquals(j.docker.serverVersion, engine.stdout.trim());
      assertEquals(byId.get("docker.daemon")?.status, "ok");

      // GPU: what nvidia-smi says, or none without it.
      assertEquals([j.gpu.state, j.gpu.gpus.length], [gpu.state, gpu.count]);

      // Network: decided by probes (not forced), and as the test's own probes found it.
      assertEquals([j.network.mode, j.network.forced], [network, false]);

      // Ports: exactly those compose publishes; the held one busy and named, the others as
      // binding them now finds them.
      assertEquals(j.ports.map((p) => p.port).sort((a, b) => a - b), ports);
      const pg = j.ports.find((p) => p.port === heldPort)!;
      assertEquals([pg.service, pg.status], ["postgres", "busy"]);
      assertMatch(pg.owner ?? "", new RegExp(`pid ${Deno.pid}\\b`));
      for (const p of j.ports.filter((p) => p.port !== heldPort)) {
        assertEquals(p.status === "free", bindable(p.port), `port ${p.port}: ${p.status}`);
      }
      assertEquals(byId.get("ports")?.status, "fail", "a held port fails the preflight");

      // The exit code follows the verdict: 3 when a check fails (the held port), else 0.
      assertEquals(j.ok, !j.checks.some((c) => c.status === "fail"));
      assertEquals([r.code, j.exitCode], [j.ok ? 0 : 3, r.code]);
      assert(j.disk.length >= 1 && j.disk.every((d) => typeof d.freeBytes === "number"));
    } finally {
      held.close();
    }
  },
});

Deno.test("doctor --online --json: the network is forced, no probe runs", async () => {
  const r = await runCli(["doctor", "--online", "--json"]);
  const j = JSON.parse(r.stdout) as Doctor;
  assertEquals([j.network.mode, j.network.forced, j.network.reason], [
    "online",
    true,
    "forced by --online",
  ]);
  assertEquals(j.network.probes ?? [], []);
  assertEquals(r.code, j.ok ? 0 : 3);
});
