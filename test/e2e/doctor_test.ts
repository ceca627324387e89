/**
 * The doctor on this machine, as a user runs it: a real Docker engine, no GPU, no internet.
 * Network probes here stay on this host's resolver; nothing is sent beyond it when DNS fails,
 * and a connect (if DNS ever answered) fails fast with no route out.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { createContext } from "../../src/context.ts";
import { type DoctorReport, runDoctor } from "../../src/doctor/mod.ts";

const root = new URL("../../", import.meta.url).pathname;

function assertThisMachine(r: DoctorReport): void {
  const byId = new Map(r.checks.map((c) => [c.id, c]));
  assertEquals(byId.get("docker.daemon")?.status, "ok", "docker daemon");
  assertEquals(byId.get("docker.compose")?.status, "ok", "docker compose");
  assertEquals(r.docker.reachable, true);
  assert(r.docker.serverVersion, "engine version reported");
  assertEquals(r.gpu.state, "none");
  assertEquals(r.gpu.gpus, []);
  assertEquals(byId.get("gpu")?.status, "ok");
  assertEquals(r.network.mode, "offline");
  assertEquals(r.network.forced, false);
  assert(
    r.disk.length >= 1 && r.disk.every((d) => typeof d.freeBytes === "number"),
    "disk measured",
  );
  assertEquals(r.ok, !r.checks.some((c) => c.status === "fail"));
}

/** Whether every relative import of the CLI layer exists (the CLI is written in parallel). */
async function cliReady(): Promise<boolean> {
  const dir = `${root}src/cli`;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.endsWith(".ts")) continue;
      const text = await Deno.readTextFile(`${dir}/${e.name}`);
      for (const m of text.matchAll(/from\s+"(\.{1,2}\/[^"]+)"/g)) {
        try {
          await Deno.stat(new URL(m[1], `file://${dir}/${e.name}`));
        } catch {
          return false;
        }
      }
    }
    return true;
  } catch {
    return false;
  }
}

Deno.test("doctor on this machine (runDoctor): docker ok, no GPU, offline", async () => {
  const ctx = createContext({ sink: { write: () => {}, isTTY: false }, interactive: false });
  const r = await runDoctor(ctx, {});
  assertThisMachine(r);
  assertEquals(r.ports.map((p) => p.port).sort((a, b) => a - b), [3001, 8084, 9090, 15432, 16379]);
  const forced = await runDoctor(ctx, { network: "online" });
  assertEquals([forced.network.mode, forced.network.reason], ["online", "forced by --online"]);
});

Deno.test({
  name: "deno run -A main.ts doctor --json: exit code matches ok",
  ignore: !(await cliReady()),
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "doctor", "--json"],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert(out.code === 0 || out.code === 3, `exit ${out.code}: ${stderr}`);
    const r = JSON.parse(stdout) as DoctorReport & { command: string };
    assertEquals(r.command, "doctor");
    assertThisMachine(r);
    assertEquals(out.code, r.ok ? 0 : 3);
  },
});
