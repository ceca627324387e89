/**
 * Host faults (issue #10): the CLI as a subprocess against the real engine, on a demo bundle
 * built once for this file (real `docker save` tars of busybox stand-ins under a unique image
 * namespace), with the host broken in each of the ways of FAULT_CASES (faults_cases.ts): the
 * Docker daemon down, gone mid-load or out of reach, the models filesystem full or read-only,
 * the Cortex dir or compose file broken, a port taken, SIGTERM in each step. Every case ends
 * with the exit code and message its table entry says, and the next normal run succeeds.
 *
 * The shared Docker daemon is never stopped: "down" is a DOCKER_HOST nobody serves, "gone
 * mid-load" is a socket proxy to the real socket that this test kills. Steps are hit by
 * watching the state dir (inotify): on each journal write the run is frozen (SIGSTOP), the
 * journal read, and SIGTERM sent while the wanted step is the one running.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertNotMatch } from "../support/assert.ts";
import { type CliResult, REPO_ROOT, runCli } from "../support/fixtures.ts";
import { sha256 } from "../support/tarbuild.ts";
import {
  buildCortexBundle,
  type CortexBundle,
  type CortexSetup,
  listTree,
  makeSetup,
  namespaceImages,
  projectHealth,
  removeNamespaceImages,
  snapshot,
} from "../support/cortex.ts";
import { runCommand } from "../../src/docker.ts";
import { STAGING_PREFIX } from "../../src/layout.ts";
import { INSTALL_STEPS } from "../../src/steps/runner.ts";
import { FAULT_CASES, type FaultCase } from "./faults_cases.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const DOCKER_SOCK = "/var/run/docker.sock";

/** The table's entry for an id, marked as exercised. */
const exercised = new Set<string>();
function faultCase(id: string): FaultCase {
  const c = FAULT_CASES.find((c) => c.id === id);
  if (!c) throw new Error(`faults_cases.ts has no case "${id}"`);
  exercised.add(id);
  return c;
}

/** The run ended as the case says: its exit code, its message, no stack trace. */
function assertOutcome(c: FaultCase, r: CliResult): void {
  assertEquals(r.code, c.expectExit, `${c.id}: exit code\n${r.stderr}`);
  assertMatch(r.stderr, new RegExp(c.expectMessage), `${c.id}: message`);
  assertNotMatch(r.stderr, /^\s+at .*(file:\/\/|ext:)/m, `${c.id}: a stack trace`);
  assertNotMatch(r.stderr, /Uncaught/, `${c.id}: an uncaught error`);
}

/** The Cortex dir's files with bytes and mtimes. */
async function cortexFiles(s: CortexSetup) {
  const tree = await listTree(s.cortexDir);
  const snaps: Record<string, unknown> = {};
  for (const p of tree) snaps[p] = await snapshot(join(s.cortexDir, p));
  return { tree, snaps };
}

/** No staging folder, temp file or probe left anywhere the run writes. */
async function assertNoLeftovers(s: CortexSetup): Promise<void> {
  for (const dir of [s.modelsDir, s.hfCacheDir, s.cortexDir, join(s.cortexDir, "backend")]) {
    for (const p of await listTree(dir)) {
      assert(!p.includes(STAGING_PREFIX), `staging left in ${dir}: ${p}`);
      assertNotMatch(p, /\.cortex-install-probe-|\.tmp/, `left in ${dir}: ${p}`);
    }
  }
}

/** The bundle's model is installed byte for byte. */
async function assertModelInstalled(b: CortexBundle, s: CortexSetup): Promise<void> {
  const src = join(b.bundleDir, "models/tiny-demo");
  const dst = join(s.modelsDir, "tiny-demo");
  assertEquals(await listTree(dst), await listTree(src));
  for (const f of await listTree(src)) {
    if (!(await Deno.stat(join(src, f))).isFile) continue;
    assertEquals(
      sha256(await Deno.readFile(join(dst, f))),
      sha256(await Deno.readFile(join(src, f))),
      f,
    );
  }
}

// deno-lint-ignore no-explicit-any
type Json = any;

async function readJournal(s: CortexSetup): Promise<Json | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(join(s.stateDir, "journal.json")));
  } catch {
    return undefined;
  }
}

/** Runs the CLI as a subprocess, calling `onStderr` with all of stderr so far on each chunk. */
function spawnCli(
  cmd: string[],
  o: { env?: Record<string, string>; onStderr?: (text: string, pid: number) => void } = {},
): { pid: number; done: Promise<CliResult> } {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", ...o.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const dec = new TextDecoder();
  let stderr = "";
  const errDone = (async () => {
    for await (const chunk of child.stderr) {
      stderr += dec.decode(chunk, { stream: true });
      o.onStderr?.(stderr, child.pid);
    }
  })();
  const outDone = new Response(child.stdout).text();
  const done = (async () => {
    const status = await child.status;
    await errDone;
    return { code: status.code, stdout: await outDone, stderr };
  })();
  return { pid: child.pid, done };
}

const cliCmd = (args: string[]) => [Deno.execPath(), "run", "-A", `${REPO_ROOT}/main.ts`, ...args];

/**
 * Runs `install` and sends SIGTERM while `step` runs: on every change in the state dir the run
 * is frozen (SIGSTOP) and its journal read; when it says `step` is running, SIGTERM goes out
 * before the run is let go on (SIGCONT). Returns the result and the journal's steps then.
 */
async function interruptAt(
  s: CortexSetup,
  args: string[],
  step: string,
): Promise<{ r: CliResult; steps: Record<string, string> | undefined }> {
  await Deno.mkdir(s.stateDir, { recursive: true, mode: 0o700 });
  const watcher = Deno.watchFs(s.stateDir);
  const { pid, done } = spawnCli(cliCmd(args));
  let steps: Record<string, string> | undefined;
  const seen: string[] = [];
  const watching = (async () => {
    for await (const _ of watcher) {
      seen.push(_.kind);
      try {
        Deno.kill(pid, "SIGSTOP");
      } catch {
        return; // the run is over
      }
      try {
        const j = await readJournal(s);
        seen.push(JSON.stringify(j?.inProgress?.steps));
        if (j?.inProgress?.steps?.[step] === "running") {
          steps = { ...j.inProgress.steps };
          Deno.kill(pid, "SIGTERM");
          return;
        }
      } finally {
        Deno.kill(pid, "SIGCONT");
      }
    }
  })();
  const r = await done;
  watcher.close();
  await watching;
  if (!steps) console.log(`interruptAt(${step}): events ${seen.join(" ")}`);
  return { r, steps };
}

/** A unix socket that forwards every connection to the real Docker socket, until killed. */
function socketProxy(path: string): { kill(): void; connections(): number } {
  const listener = Deno.listen({ transport: "unix", path });
  const open: Deno.Conn[] = [];
  let count = 0;
  (async () => {
    try {
      for await (const c of listener) {
        count++;
        const up = await Deno.connect({ transport: "unix", path: DOCKER_SOCK });
        open.push(c, up);
        c.readable.pipeTo(up.writable).catch(() => {});
        up.readable.pipeTo(c.writable).catch(() => {});
      }
    } catch {
      // closed
    }
  })();
  return {
    connections: () => count,
    kill() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/**
 * The bundle with two big listed files (hardlinked otherwise): a model file the models step
 * copies and a file only the verify step hashes, so that each of these steps runs long enough
 * (hundreds of milliseconds) for SIGTERM to land inside it on a loaded machine.
 */
async function heavyBundle(b: CortexBundle): Promise<CortexBundle> {
  const dir = join(b.root, "heavy-bundle");
  const cp = await runCommand("cp", ["-al", b.bundleDir, dir]);
  assertEquals(cp.code, 0, cp.stderr);
  const sums = join(dir, "checksums.sha256");
  const listed = await Deno.readTextFile(sums);
  await Deno.remove(sums); // a hardlink: write a new file, not through the shared inode
  const block = new Uint8Array(1 << 20);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let i = 65536; i < block.length; i += 65536) block.set(block.subarray(0, 65536), i);
  const lines: string[] = [];
  const big: [string, number][] = [["models/tiny-demo/extra-weights.bin", 32], [
    "docs/notes.bin",
    96,
  ]];
  for (const [rel, mib] of big) {
    await Deno.mkdir(join(dir, rel, ".."), { recursive: true });
    const f = await Deno.open(join(dir, rel), { write: true, create: true });
    for (let i = 0; i < mib; i++) {
      block[0] = i; // every MiB differs
      await f.write(block);
    }
    f.close();
    const h = await runCommand("sha256sum", [join(dir, rel)]);
    lines.push(`${h.stdout.split(" ")[0]}  ${rel}`);
  }
  await Deno.writeTextFile(sums, listed + lines.join("\n") + "\n");
  return { ...b, bundleDir: dir };
}

/** The steps of the journal's unfinished run after `step` in INSTALL_STEPS order. */
function stepsAfter(steps: Record<string, string>, step: string): string[] {
  const names = INSTALL_STEPS.map((s) => s.name);
  return Object.keys(steps).filter((n) => names.indexOf(n) > names.indexOf(step));
}

Deno.test({
  name: "host faults: each ends with its exit code and message, and the next run succeeds",
  ...opts,
  fn: async (t) => {
    const started = performance.now();
    const b: CortexBundle = await buildCortexBundle();
    await Deno.chmod(b.root, 0o755); // the unprivileged user's run reads the bundle
    const mounts: string[] = [];
    const install = (s: CortexSetup, ...extra: string[]) =>
      runCli(["install", ...s.args, "--yes", ...extra]);
    /** A fault the preflight must catch: the case's outcome, nothing changed. */
    const preflightFault = async (
      c: FaultCase,
      s: CortexSetup,
      run: () => Promise<CliResult>,
    ) => {
      const before = await cortexFiles(s);
      const r = await run();
      assertOutcome(c, r);
      assertEquals(await cortexFiles(s), before, `${c.id}: the Cortex dir changed`);
      assertEquals(await listTree(s.modelsDir), [], `${c.id}: a model was written`);
      assertEquals(await projectHealth(s.project), {}, `${c.id}: a container was started`);
      return r;
    };
    try {
      assertEquals(
        await namespaceImages(b.ns),
        [],
        "the engine starts without the bundle's images",
      );

      // Chain A: SIGTERM in verify, then models, then load; later settings and stack; each run
      // resumes the one before; the last, normal, run ends healthy.
      const heavy = await heavyBundle(b);
      const a = await makeSetup(heavy);
      // A long backend/.env (operator's notes) makes the settings step take a while too.
      await Deno.writeTextFile(
        join(a.cortexDir, "backend/.env"),
        Array.from({ length: 150_000 }, (_, i) => `# operator's note ${i}, kept as it is\n`)
          .join(""),
        { append: true },
      );
      const aBackend = await Deno.readTextFile(join(a.cortexDir, "backend/.env"));
      const aRoot = await Deno.readTextFile(join(a.cortexDir, ".env"));
      const sigterm = async (id: string, step: string, extra: string[] = []) => {
        const c = faultCase(id);
        const { r, steps } = await interruptAt(
          a,
          ["install", ...a.args, "--yes", "--wait-timeout", "300", ...extra],
          step,
        );
        assert(steps, `${id}: the run never reached the ${step} step:\n${r.stderr}`);
        assertOutcome(c, r);
        const j = await readJournal(a);
        assertEquals(j.lastRun.outcome, "interrupted", `${id}: the journal's last run`);
        assertEquals(j.lastRun.exitCode, 130);
        assert(
          ["running", "done"].includes(j.inProgress.steps[step]),
          `${id}: ${JSON.stringify(j.inProgress.steps)}`,
        );
        assertEquals(stepsAfter(j.inProgress.steps, step), [], `${id}: went on after ${step}`);
        await assertNoLeftovers(a);
        // The env files: the original bytes, or the original then the added keys (whole).
        const backend = await Deno.readTextFile(join(a.cortexDir, "backend/.env"));
        assert(backend.startsWith(aBackend), `${id}: backend/.env lost its lines`);
        if (backend !== aBackend) assertMatch(backend, /^HF_CACHE_DIR=.*\n$/m);
        assert((await Deno.readTextFile(join(a.cortexDir, ".env"))).startsWith(aRoot));
        // A model folder is there whole or not at all.
        const tree = await listTree(a.modelsDir);
        if (tree.length) await assertModelInstalled(heavy, a);
        return r;
      };

      await t.step("SIGTERM while verify runs: exit 130, nothing written", async () => {
        await sigterm("sigterm-verify", "verify");
        assertEquals(await listTree(a.modelsDir), []);
        assertEquals(await namespaceImages(b.ns), []);
      });
      await t.step("SIGTERM while models runs: exit 130, no half-copied model", async () => {
        await sigterm("sigterm-models", "models");
        assertEquals(await namespaceImages(b.ns), [], "no image loaded: load comes after models");
      });
      await t.step("SIGTERM while load runs: exit 130, the rest loads next time", async () => {
        await sigterm("sigterm-load", "load");
        assert((await namespaceImages(b.ns)).length < b.refs.length, "load was cut short");
      });

      await t.step("the Docker daemon gone mid-load (socket proxy killed)", async () => {
        const c = faultCase("docker-stopped-mid-load");
        const s = await makeSetup(b);
        const sock = join(s.dir, "docker.sock");
        const proxy = socketProxy(sock);
        let killedAt: string | undefined;
        const { done } = spawnCli(
          cliCmd(["install", ...s.args, "--yes", "--skip-start"]),
          {
            env: { DOCKER_HOST: `unix://${sock}` },
            onStderr: (text) => {
              const m = /\bload (\S+\.tar)/.exec(text);
              if (m && !killedAt) {
                killedAt = m[1];
                proxy.kill();
              }
            },
          },
        );
        const r = await done;
        proxy.kill();
        assert(killedAt, `no load started:\n${r.stderr}`);
        assert(proxy.connections() > 0);
        assertOutcome(c, r);
        const j = await readJournal(s);
        assertEquals([j.lastRun.outcome, j.lastRun.exitCode], ["failed", c.expectExit]);
        assertEquals(j.inProgress.steps.load, "running", JSON.stringify(j.inProgress.steps));
        await assertNoLeftovers(s);
        // The daemon back: the next run loads what is missing and completes.
        const next = await install(s, "--skip-start", "--json");
        assertEquals(next.code, 0, next.stderr);
        const loaded = new Set(await namespaceImages(b.ns));
        for (const ref of b.refs) assert(loaded.has(ref), `${ref} is loaded`);
        await assertModelInstalled(b, s);
      });

      await t.step(
        "SIGTERM while settings runs: env files whole, stopped before the stack",
        async () => {
          await sigterm("sigterm-settings", "settings");
          assertEquals(await projectHealth(a.project), {}, "no container started");
        },
      );
      await t.step(
        "SIGTERM while the stack starts: exit 130; the next run ends healthy",
        async () => {
          await sigterm("sigterm-stack", "stack");
          const r = await install(a, "--json", "--wait-timeout", "300");
          assertEquals(r.code, 0, r.stderr);
          assertEquals(JSON.parse(r.stdout).ok, true);
          await assertModelInstalled(heavy, a);
          await assertNoLeftovers(a);
          assertEquals(await projectHealth(a.project), {
            gateway: "healthy",
            postgres: "healthy",
            prometheus: "running",
            redis: "healthy",
          });
          const j = await readJournal(a);
          assertEquals(j.inProgress, undefined, "no unfinished run");
          assertEquals(j.lastRun.outcome, "ok");
        },
      );

      // The faults below touch only their own setup: they run side by side.
      const side = (name: string, fn: () => Promise<void>) => sideSteps.push({ name, fn });
      const sideSteps: { name: string; fn: () => Promise<void> }[] = [];
      side("the Docker daemon down before the run", async () => {
        const c = faultCase("docker-unreachable");
        const s = await makeSetup(b);
        await preflightFault(c, s, () =>
          runCli(["install", ...s.args, "--yes"], {
            env: { DOCKER_HOST: `unix://${join(s.dir, "no-daemon.sock")}` },
          }));
        const next = await install(s, "--skip-start");
        assertEquals(next.code, 0, next.stderr);
        await assertModelInstalled(b, s);
      });

      side("the Docker socket not accessible to the user", async () => {
        const c = faultCase("docker-socket-denied");
        const s = await makeSetup(b);
        // The program as one file, run by uid 65534 (no docker group) with its own Deno dir.
        const js = join(s.dir, "cortex-install.js");
        const bundled = await runCommand(Deno.execPath(), [
          "bundle",
          "-q",
          "-o",
          js,
          `${REPO_ROOT}/main.ts`,
        ]);
        assertEquals(bundled.code, 0, bundled.stderr);
        await runCommand("chown", ["-R", "65534:65534", s.dir]);
        await runCommand("chmod", ["-R", "a+rX", b.bundleDir]);
        await preflightFault(c, s, () =>
          spawnCli([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            `HOME=${s.dir}`,
            `DENO_DIR=${join(s.dir, "deno")}`,
            Deno.execPath(),
            "run",
            "-A",
            js,
            "install",
            ...s.args,
            "--yes",
          ]).done);
        const r = await install(s, "--skip-start");
        assertEquals(r.code, 0, r.stderr);
        await assertModelInstalled(b, s);
      });

      side("the models filesystem full during the copy", async () => {
        const c = faultCase("models-fs-full");
        const s = await makeSetup(b);
        // Room for the root, a model already there (folder + file) and two more entries.
        const m = await runCommand("mount", [
          "-t",
          "tmpfs",
          "-o",
          "size=2g,nr_inodes=5",
          "cit-faults",
          s.modelsDir,
        ]);
        assertEquals(m.code, 0, m.stderr);
        mounts.push(s.modelsDir);
        await Deno.mkdir(join(s.modelsDir, "mine"));
        await Deno.writeTextFile(join(s.modelsDir, "mine/weights.bin"), "the operator's model\n");
        const mine = await snapshot(join(s.modelsDir, "mine/weights.bin"));
        const before = await cortexFiles(s);
        const r = await install(s, "--skip-start");
        assertOutcome(c, r);
        assertMatch(r.stderr, /free space/);
        assertEquals(await listTree(s.modelsDir), ["./mine", "./mine/weights.bin"]);
        assertEquals(await snapshot(join(s.modelsDir, "mine/weights.bin")), mine);
        assertEquals(await cortexFiles(s), before, "no setting written: models come first");
        const j = await readJournal(s);
        assertEquals([j.lastRun.exitCode, j.inProgress.steps.models], [7, "running"]);
        // Space freed: the next run installs the model.
        const re = await runCommand("mount", ["-o", "remount,nr_inodes=1000", s.modelsDir]);
        assertEquals(re.code, 0, re.stderr);
        const next = await install(s, "--skip-start");
        assertEquals(next.code, 0, next.stderr);
        await assertModelInstalled(b, s);
        assertEquals(await snapshot(join(s.modelsDir, "mine/weights.bin")), mine);
        await assertNoLeftovers(s);
      });

      side("a read-only models dir", async () => {
        const c = faultCase("models-dir-readonly");
        const s = await makeSetup(b);
        for (
          const args of [["--bind", s.modelsDir, s.modelsDir], [
            "-o",
            "remount,bind,ro",
            s.modelsDir,
          ]]
        ) {
          const m = await runCommand("mount", args);
          assertEquals(m.code, 0, m.stderr);
        }
        mounts.push(s.modelsDir);
        await preflightFault(c, s, () => install(s));
        await runCommand("umount", [s.modelsDir]);
        mounts.splice(mounts.indexOf(s.modelsDir), 1);
        const next = await install(s, "--skip-start");
        assertEquals(next.code, 0, next.stderr);
        await assertModelInstalled(b, s);
      });

      side("a Cortex dir without backend/", async () => {
        const c = faultCase("cortex-dir-no-backend");
        const s = await makeSetup(b);
        await Deno.rename(join(s.cortexDir, "backend"), join(s.dir, "backend.away"));
        await preflightFault(c, s, () => install(s));
        assertEquals((await listTree(s.cortexDir)).filter((p) => p.includes("backend")), []);
        await Deno.rename(join(s.dir, "backend.away"), join(s.cortexDir, "backend"));
        const next = await install(s, "--skip-start");
        assertEquals(next.code, 0, next.stderr);
      });

      side("a compose file with a syntax error", async () => {
        const c = faultCase("compose-syntax-error");
        const s = await makeSetup(b);
        const good = await Deno.readTextFile(s.composeFile);
        await Deno.writeTextFile(s.composeFile, good.replace(/^services:$/m, "services: [oops"));
        await preflightFault(c, s, () => install(s));
        await Deno.writeTextFile(s.composeFile, good);
        const next = await install(s, "--skip-start");
        assertEquals(next.code, 0, next.stderr);
      });

      side("a port the stack needs held by another process", async () => {
        const c = faultCase("port-held");
        const s = await makeSetup(b);
        const held = Deno.listen({ hostname: "127.0.0.1", port: s.ports.gateway });
        try {
          const r = await preflightFault(c, s, () => install(s));
          assertMatch(r.stderr, new RegExp(`\\b${s.ports.gateway} \\(gateway\\)`));
        } finally {
          held.close();
        }
        const next = await install(s, "--wait-timeout", "300");
        assertEquals(next.code, 0, next.stderr);
        assertEquals((await projectHealth(s.project)).gateway, "healthy");
      });

      side("a secret on the command line shows nowhere", async () => {
        const s = await makeSetup(b);
        const pwFile = join(s.dir, "pw-cit-PathMark");
        await Deno.writeTextFile(pwFile, "cit-Pa55-ContentMark\n", { mode: 0o600 });
        const r = await install(s, "--skip-start", "--json", `--admin-password-file=${pwFile}`);
        assertEquals(r.code, 0, r.stderr);
        // Refused forms: a value starting with "-", a value after "--", a typo of the flag.
        const refused = await Promise.all([
          ["--admin-password-file", "-cit-DashMark"],
          ["--admin-password-file", "--", "cit-AfterMark"],
          ["--admin-pasword-file", "cit-TypoMark"],
        ].map((f) => runCli(["install", ...s.args, "--yes", "--json", ...f])));
        const state = await Promise.all(
          ["journal.json", "audit.log"].map((f) => Deno.readTextFile(join(s.stateDir, f))),
        );
        assertMatch(state[1], /"--admin-password-file=\*\*\*"/);
        for (const x of refused) assertEquals(x.code, 2, x.stderr);
        const texts = [r.stdout, r.stderr, ...refused.flatMap((x) => [x.stdout, x.stderr])];
        for (const mark of ["PathMark", "ContentMark", "DashMark", "AfterMark", "TypoMark"]) {
          for (const text of [...texts, ...state]) assert(!text.includes(mark), `${mark} leaked`);
        }
      });
      // Three at a time: enough to overlap the waits on Docker, not to starve a small machine.
      const queue = [...sideSteps];
      await Promise.all([1, 2, 3].map(async () => {
        for (let x = queue.shift(); x; x = queue.shift()) {
          await t.step({ name: x.name, fn: x.fn, ...opts, sanitizeExit: false });
        }
      }));

      await t.step("every case of faults_cases.ts was run", () => {
        assertEquals([...exercised].sort(), FAULT_CASES.map((c) => c.id).sort());
      });
      console.log(`faults_test: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      for (const m of mounts.reverse()) await runCommand("umount", ["-l", m]);
      await b.cleanup();
      await removeNamespaceImages(b.ns);
    }
  },
});
