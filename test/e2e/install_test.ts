/**
 * Journeys for `install` (issue #3): the CLI as a subprocess against the real engine, on a demo
 * bundle built once for this file under a unique image namespace. Each journey gets its own
 * Cortex dir, state dir, models dir, compose project and free loopback ports
 * (`test/support/cortex.ts`), so this file can run beside the others. The journeys run in one
 * order on purpose: those that must load nothing run while the engine has none of the images.
 */
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { assert, assertEquals, assertMatch, assertNotMatch } from "../support/assert.ts";
import { runCli, watchLoadEvents } from "../support/fixtures.ts";
import { buildTar, gzip, sha256 } from "../support/tarbuild.ts";
import {
  buildCortexBundle,
  containerEnv,
  type CortexBundle,
  type CortexSetup,
  countNamespaceLoads,
  listTree,
  makeSetup,
  namespaceImages,
  projectHealth,
  snapshot,
} from "../support/cortex.ts";
import { runCommand } from "../../src/docker.ts";
import type { CliResult } from "../support/fixtures.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const now = () => Date.now() / 1000;

// deno-lint-ignore no-explicit-any
type Json = any;

/** stdout is exactly one JSON document (the whole of it parses). */
function oneJson(r: CliResult): Json {
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(
      `stdout is not one JSON document (${e}):\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
}

/** No planted secret appears in stdout, stderr, the journal or the audit log. */
async function assertNoSecrets(s: CortexSetup, ...outputs: string[]): Promise<void> {
  const state = await Promise.all(
    ["journal.json", "audit.log"].map((f) =>
      Deno.readTextFile(join(s.stateDir, f)).catch(() => "")
    ),
  );
  for (const secret of s.secrets) {
    for (const text of [...outputs, ...state]) {
      assert(!text.includes(secret), `secret "${secret}" leaked into an output or the state dir`);
    }
  }
}

/** The Cortex dir's files with bytes and mtimes, to prove nothing was written. */
async function cortexFiles(s: CortexSetup) {
  const tree = await listTree(s.cortexDir);
  const snaps: Record<string, unknown> = {};
  for (const p of tree) snaps[p] = await snapshot(join(s.cortexDir, p));
  return { tree, snaps };
}

const BACKEND = "backend/.env";
const OVERRIDE = "docker.compose.cortex-install.yaml";

Deno.test({
  name: "install journeys: fresh, re-run, user env kept, conflicts, hostile archive, failures",
  ...opts,
  fn: async (t) => {
    const b: CortexBundle = await buildCortexBundle();
    const vllm = `${b.ns}/vllm-openai:v0.6.3`;
    const llama = `${b.ns}/llama.cpp:server-cuda`;
    try {
      assertEquals(
        await namespaceImages(b.ns),
        [],
        "the engine starts without the bundle's images",
      );

      await t.step("no --yes with stdin closed: exit 2 naming --yes, nothing changed", async () => {
        const s = await makeSetup(b);
        const before = await cortexFiles(s);
        const t0 = now();
        const r = await runCli(["install", ...s.args, "--json"]);
        assertEquals(r.code, 2, r.stderr);
        assertMatch(r.stderr, /--yes/);
        const j = oneJson(r);
        assertEquals([j.ok, j.exitCode, j.error.kind], [false, 2, "usage"]);
        assertEquals(await countNamespaceLoads(b.ns, t0, now() + 1), 0);
        assertEquals(await namespaceImages(b.ns), []);
        assertEquals(await cortexFiles(s), before);
        assertEquals(await listTree(s.modelsDir), []);
        // The audit log records the refused run with its real exit code.
        const audit = (await Deno.readTextFile(join(s.stateDir, "audit.log"))).trim().split("\n");
        assertEquals(
          [JSON.parse(audit.at(-1)!).exitCode, JSON.parse(audit.at(-1)!).outcome],
          [2, "failed"],
        );
        await assertNoSecrets(s, r.stdout, r.stderr);
      });

      await t.step("compose needs an image the bundle lacks: exit 3, nothing written", async () => {
        const s = await makeSetup(b, {
          compose: (c) =>
            c + `\n  extra:\n    image: ${b.ns}/not-shipped:1\n    network_mode: host\n` +
            `    command: ["sleep", "600"]\n`,
        });
        const before = await cortexFiles(s);
        const t0 = now();
        const r = await runCli(["install", ...s.args, "--yes", "--json"]);
        assertEquals(r.code, 3, r.stderr);
        assertMatch(r.stderr, new RegExp(`service "extra" needs "${b.ns}/not-shipped:1"`));
        const j = oneJson(r);
        assertEquals([j.ok, j.exitCode, j.error.step], [false, 3, "preflight"]);
        assertEquals(await countNamespaceLoads(b.ns, t0, now() + 1), 0);
        assertEquals(await namespaceImages(b.ns), []);
        assertEquals(await cortexFiles(s), before);
        assertEquals(await listTree(s.modelsDir), []);
        assertEquals(await listTree(s.hfCacheDir), []);
        // The lock is taken before the preflight: the state dir exists and records the failed
        // run (journal + audit log), and nothing else is in it.
        assertEquals(await listTree(s.stateDir), ["./audit.log", "./journal.json", "./lock"]);
        const audit = (await Deno.readTextFile(join(s.stateDir, "audit.log"))).trim().split("\n");
        assertEquals(JSON.parse(audit.at(-1)!).exitCode, 3);
        await assertNoSecrets(s, r.stdout, r.stderr);
      });

      await t.step(
        "interactive run answered n: plan shown, cancelled, nothing changed",
        async () => {
          const s = await makeSetup(b);
          const before = await cortexFiles(s);
          const t0 = now();
          const r = await runInteractive([...s.args], ["n", "\r"]);
          assertEquals(r.code, 130, r.output);
          assertMatch(r.output, /Images:/);
          assertMatch(r.output, /Settings:/);
          assertMatch(r.output, /Go on with the install\?/);
          assertMatch(r.output, /Cancelled: nothing was changed/);
          assertEquals(await countNamespaceLoads(b.ns, t0, now() + 1), 0);
          assertEquals(await namespaceImages(b.ns), []);
          assertEquals(await cortexFiles(s), before);
          assertEquals(await listTree(s.modelsDir), []);
          await assertNoSecrets(s, r.output);
        },
      );

      // The fresh install: --yes with stdin closed (runCli closes stdin) completes.
      const fresh = await makeSetup(b);
      const origRoot = await Deno.readTextFile(join(fresh.cortexDir, ".env"));
      const origBackend = await Deno.readTextFile(join(fresh.cortexDir, BACKEND));
      await t.step(
        "fresh install: images, env files, effective settings, models, health",
        async (t) => {
          const s = fresh;
          const loads = watchLoadEvents(now());
          const r = await runCli([
            "install",
            ...s.args,
            "--yes",
            "--json",
            "--wait-timeout",
            "300",
          ]);
          const loaded = await loads.stop();
          assertEquals(r.code, 0, r.stderr);
          const j = oneJson(r);
          await assertNoSecrets(s, r.stdout, r.stderr);
          assertEquals([j.ok, j.outcome, j.exitCode], [true, "installed", 0]);

          await t.step("every image loaded once, the retag made", async () => {
            assertEquals(
              j.images.images.map((i: Json) => [i.refs[0], i.verdict]),
              b.refs.map((r) => [r, "loaded"]),
            );
            assertEquals(
              loaded.filter((a) => JSON.stringify(a).includes(`"${b.ns}/`)).length,
              b.refs.length,
              "load events",
            );
            for (const ref of b.refs) {
              const x = await runCommand("docker", [
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                ref,
              ]);
              assertEquals(x.code, 0, `${ref} is present`);
            }
            assertEquals(j.retags, [{
              service: "prometheus",
              from: `${b.ns}/prometheus:v2.47.0`,
              to: `${b.ns}/prometheus:latest`,
            }]);
            assertEquals(
              await namespaceImages(b.ns),
              [...b.refs, `${b.ns}/prometheus:latest`].sort(),
              "the engine's refs of the namespace",
            );
          });

          await t.step("backend/.env: original bytes, then the offline keys", async () => {
            const text = await Deno.readTextFile(join(s.cortexDir, BACKEND));
            assert(text.startsWith(origBackend), "every original line kept byte for byte");
            const added = Object.fromEntries(
              text.slice(origBackend.length).split("\n").filter((l) => /^[A-Z_]+=/.test(l))
                .map((l) => l.split(/=(.*)/s).slice(0, 2)),
            );
            assertEquals(added, {
              OFFLINE_MODE: "True",
              OFFLINE_MODE_AUTO_DETECT: "False",
              REQUIRE_IMAGE_PRECACHE: "True",
              VLLM_IMAGE: vllm,
              LLAMACPP_IMAGE: llama,
              CORTEX_MODELS_DIR: s.modelsDir,
              CORTEX_MODELS_DIR_HOST: s.modelsDir,
              HF_CACHE_DIR: s.hfCacheDir,
            });
            assertEquals((await Deno.stat(join(s.cortexDir, BACKEND))).mode! & 0o777, 0o600);
            const baks = (await listTree(join(s.cortexDir, "backend"))).filter((p) =>
              p.includes(".env.bak-")
            );
            assertEquals(baks.length, 1);
            assertEquals(
              await Deno.readTextFile(join(s.cortexDir, "backend", baks[0])),
              origBackend,
            );
          });

          await t.step("root .env: original lines, then the interpolated keys", async () => {
            const text = await Deno.readTextFile(join(s.cortexDir, ".env"));
            assert(text.startsWith(origRoot), "the ports and other keys kept byte for byte");
            for (
              const l of [
                `VLLM_IMAGE=${vllm}`,
                `CORTEX_MODELS_DIR=${s.modelsDir}`,
                `HF_CACHE_DIR=${s.hfCacheDir}`,
              ]
            ) assert(text.split("\n").includes(l), `root .env has ${l}`);
          });

          await t.step(
            "the override adds backend/.env to the gateway and pins images",
            async () => {
              const o = parseYaml(await Deno.readTextFile(join(s.cortexDir, OVERRIDE)));
              assertEquals(o.services.gateway.env_file, ["./backend/.env"]);
              assertEquals(
                Object.fromEntries(
                  Object.entries(o.services).map(([k, v]) => [k, (v as Json).image]),
                ),
                {
                  gateway: `${b.ns}/cortex-gateway:latest`,
                  postgres: `${b.ns}/postgres:16`,
                  prometheus: `${b.ns}/prometheus:latest`,
                  redis: `${b.ns}/redis:7`,
                },
              );
            },
          );

          await t.step("the gateway container really got the settings (effective)", async () => {
            const env = await containerEnv(s.project, "gateway");
            assert(env.includes("OFFLINE_MODE=True"), env.join("\n"));
            assert(env.includes("OFFLINE_MODE_AUTO_DETECT=False"));
            assert(env.includes("REQUIRE_IMAGE_PRECACHE=True"));
            assert(env.includes(`VLLM_IMAGE=${vllm}`), env.join("\n"));
            assert(env.includes(`LLAMACPP_IMAGE=${llama}`), env.join("\n"));
            // And the process inside sees them (the stand-in serves what `env` printed).
            const res = await fetch(`http://127.0.0.1:${s.ports.gateway}/settings.txt`);
            const seen = await res.text();
            assertMatch(seen, /^OFFLINE_MODE=True$/m);
            assertMatch(seen, new RegExp(`^VLLM_IMAGE=${vllm.replaceAll(".", "\\.")}$`, "m"));
          });

          await t.step("models byte-identical to the bundle's", async () => {
            const src = join(b.bundleDir, "models/tiny-demo");
            const dst = join(s.modelsDir, "tiny-demo");
            assertEquals(await listTree(dst), await listTree(src));
            for (const f of await listTree(src)) {
              assertEquals(
                sha256(await Deno.readFile(join(dst, f))),
                sha256(await Deno.readFile(join(src, f))),
                f,
              );
            }
            assertEquals(j.models.models.map((m: Json) => [m.name, m.verdict]), [[
              "tiny-demo",
              "copied",
            ]]);
            // No staging leftovers beside the model.
            assertEquals(await listTree(s.modelsDir), [
              "./tiny-demo",
              ...(await listTree(src)).map((p) => `./tiny-demo/${p.slice(2)}`),
            ]);
          });

          await t.step("services healthy, in the report and in the engine", async () => {
            assertEquals(
              Object.fromEntries(j.stack.services.map((x: Json) => [x.name, x.health ?? x.state])),
              { gateway: "healthy", postgres: "healthy", prometheus: "running", redis: "healthy" },
            );
            assertEquals(await projectHealth(s.project), {
              gateway: "healthy",
              postgres: "healthy",
              prometheus: "running",
              redis: "healthy",
            });
            assertEquals(j.urls, [`http://127.0.0.1:${s.ports.gateway}/health`]);
            const h = await (await fetch(j.urls[0])).json();
            assertEquals(h, { status: "ok" });
          });
        },
      );

      await t.step("second run: nothing loaded, copied or written", async () => {
        const s = fresh;
        const files = [".env", BACKEND, OVERRIDE].map((f) => join(s.cortexDir, f));
        const before = await Promise.all(files.map(snapshot));
        const treeBefore = await listTree(s.cortexDir);
        const modelsBefore = await Promise.all(
          (await listTree(s.modelsDir)).map((p) => snapshot(join(s.modelsDir, p))),
        );
        const t0 = now();
        const r = await runCli(["install", ...s.args, "--yes", "--json"]);
        const t1 = now() + 1;
        assertEquals(r.code, 0, r.stderr);
        const j = oneJson(r);
        assertEquals([j.ok, j.outcome], [true, "unchanged"]);
        assertEquals(j.images, undefined, "no image step ran");
        assertEquals(j.models, undefined, "no model step ran");
        assertEquals(await countNamespaceLoads(b.ns, t0, t1), 0);
        assertEquals(await Promise.all(files.map(snapshot)), before);
        assertEquals(await listTree(s.cortexDir), treeBefore, "no new file (no new .bak-*)");
        assertEquals(
          await Promise.all(
            (await listTree(s.modelsDir)).map((p) => snapshot(join(s.modelsDir, p))),
          ),
          modelsBefore,
        );
        assertEquals(j.stack.healthy, true);
        await assertNoSecrets(s, r.stdout, r.stderr);
      });

      await t.step("a re-run with another --models-dir is not a no-op", async () => {
        const s = fresh;
        const args = [...s.args];
        const other = `${s.modelsDir}-moved`;
        args[args.indexOf("--models-dir") + 1] = other;
        const r = await runCli(["install", ...args, "--yes", "--json", "--skip-start"]);
        assertEquals(r.code, 0, r.stderr);
        const j = oneJson(r);
        assertEquals(j.outcome, "installed");
        assertEquals(j.models.models[0].verdict, "copied");
        const backend = await Deno.readTextFile(join(s.cortexDir, BACKEND));
        assertMatch(backend, new RegExp(`^CORTEX_MODELS_DIR=${other}$`, "m"));
        // and back, so the steps below see the original install
        const back = await runCli(["install", ...s.args, "--yes", "--json"]);
        assertEquals(back.code, 0, back.stderr);
        await Deno.remove(other, { recursive: true });
      });

      await t.step(
        "an existing backend/.env (CRLF, export, comments) is kept byte for byte",
        async () => {
          const secret = `cit-secret-crlf-${crypto.randomUUID().slice(0, 8)}`;
          const orig = [
            "# my Cortex settings\r\n",
            'export CUSTOM_KEY="keep me" # trailing comment\r\n',
            "\r\n",
            "OFFLINE_MODE=False\r\n",
            `INTERNAL_VLLM_API_KEY=${secret}\r\n`,
            "   # indented comment\r\n",
            "export VLLM_IMAGE=old/vllm:0\r\n",
            "QUOTED='a b c'\r\n",
            "LAST_NO_NEWLINE=1",
          ].join("");
          const s = await makeSetup(b, { backendEnv: orig });
          s.secrets.push(secret);
          const r = await runCli([
            "install",
            ...s.args,
            "--yes",
            "--json",
            "--wait-timeout",
            "300",
          ]);
          assertEquals(r.code, 0, r.stderr);
          oneJson(r);
          await assertNoSecrets(s, r.stdout, r.stderr);
          const text = await Deno.readTextFile(join(s.cortexDir, BACKEND));
          const lines = text.split("\r\n");
          // Every line that is not one of our keys is there, unchanged, in order.
          const ours =
            /^(export )?(OFFLINE_MODE|OFFLINE_MODE_AUTO_DETECT|REQUIRE_IMAGE_PRECACHE|VLLM_IMAGE|LLAMACPP_IMAGE|CORTEX_MODELS_DIR|CORTEX_MODELS_DIR_HOST|HF_CACHE_DIR)=/;
          const kept = orig.split("\r\n").filter((l) => !ours.test(l));
          const keptAfter = lines.filter((l) => !ours.test(l) && !l.startsWith("# cortex-install"));
          assertEquals(keptAfter.filter(Boolean), kept.filter(Boolean));
          assertEquals(lines.slice(0, 3), orig.split("\r\n").slice(0, 3));
          // Our keys were replaced in place (export kept), the others appended, all with CRLF.
          assertEquals(lines[3], "OFFLINE_MODE=True");
          assertEquals(lines[6], `export VLLM_IMAGE=${vllm}`);
          assertNotMatch(text.replaceAll("\r\n", ""), /\n/, "every line ends with CRLF");
          assertMatch(text, /\r\nLAST_NO_NEWLINE=1\r\n/);
          for (
            const l of [
              "OFFLINE_MODE_AUTO_DETECT=False",
              "REQUIRE_IMAGE_PRECACHE=True",
              `LLAMACPP_IMAGE=${llama}`,
              `CORTEX_MODELS_DIR=${s.modelsDir}`,
            ]
          ) assert(lines.includes(l), `backend/.env has ${l}`);
          // The backup holds the old bytes.
          const baks = (await listTree(join(s.cortexDir, "backend"))).filter((p) =>
            p.includes(".env.bak-")
          );
          assertEquals(baks.length, 1);
          assertEquals(await Deno.readTextFile(join(s.cortexDir, "backend", baks[0])), orig);
          // Compose read the CRLF file: the container gets clean values (no \r).
          const env = await containerEnv(s.project, "gateway");
          assert(env.includes("OFFLINE_MODE=True"), JSON.stringify(env));
          assert(env.includes("CUSTOM_KEY=keep me"), JSON.stringify(env));
          assert(env.includes(`VLLM_IMAGE=${vllm}`), JSON.stringify(env));
        },
      );

      await t.step(
        "model conflict: reported, the original untouched, the run succeeds",
        async () => {
          const s = await makeSetup(b);
          const mine = join(s.modelsDir, "tiny-demo");
          await Deno.mkdir(mine);
          await Deno.writeTextFile(join(mine, "config.json"), '{"mine": true}\n');
          await Deno.writeTextFile(join(mine, "weights.bin"), "user weights");
          const past = new Date("2024-01-02T03:04:05Z");
          for (const f of ["config.json", "weights.bin"]) {
            await Deno.utime(join(mine, f), past, past);
          }
          const before = await Promise.all(
            ["config.json", "weights.bin"].map((f) => snapshot(join(mine, f))),
          );
          const r = await runCli(["install", ...s.args, "--yes", "--json", "--skip-start"]);
          assertEquals(r.code, 0, r.stderr);
          const j = oneJson(r);
          assertEquals(j.models.conflicts, 1);
          assertEquals(j.models.models.map((m: Json) => [m.name, m.verdict, m.target]), [[
            "tiny-demo",
            "conflict",
            mine,
          ]]);
          assertEquals(await listTree(mine), ["./config.json", "./weights.bin"]);
          assertEquals(
            await Promise.all(["config.json", "weights.bin"].map((f) => snapshot(join(mine, f)))),
            before,
          );
          assertEquals(await listTree(s.modelsDir), [
            "./tiny-demo",
            "./tiny-demo/config.json",
            "./tiny-demo/weights.bin",
          ]);
          await assertNoSecrets(s, r.stdout, r.stderr);
        },
      );

      await t.step("hostile archives: refused with exit 4, nothing written outside", async (t) => {
        const cases: [
          string,
          string,
          { name: string; data?: string; type?: string; linkname?: string }[],
        ][] = [
          ["model-evil-files.tar.gz", "a ../ entry", [
            { name: "evil/config.json", data: "{}" },
            { name: "evil/../../escape.txt", data: "pwned" },
          ]],
          ["models.tar.gz", "a symlink leading outside", [
            { name: "models/", type: "5" },
            { name: "models/evil/", type: "5" },
            { name: "models/evil/config.json", data: "{}" },
            { name: "models/evil/out", type: "2", linkname: "../../../escape-dir" },
          ]],
        ];
        for (const [file, what, entries] of cases) {
          await t.step(`${file} with ${what}`, async () => {
            // A copy of the bundle (hardlinked tars) with the archive listed in checksums.
            const bundle = join(b.root, `hostile-${crypto.randomUUID().slice(0, 8)}`);
            const cp = await runCommand("cp", ["-al", b.bundleDir, bundle]);
            assertEquals(cp.code, 0, cp.stderr);
            await Deno.remove(join(bundle, "checksums.sha256"));
            const sums = await Deno.readTextFile(join(b.bundleDir, "checksums.sha256"));
            const data = await gzip(buildTar(entries));
            await Deno.writeFile(join(bundle, file), data);
            await Deno.writeTextFile(
              join(bundle, "checksums.sha256"),
              sums + `${sha256(data)}  ${file}\n`,
            );
            const s = await makeSetup(b);
            const args = [...s.args];
            args[args.indexOf("--bundle") + 1] = bundle;
            const before = await cortexFiles(s);
            const outside = await listTree(s.dir);
            const r = await runCli(["install", ...args, "--yes", "--json", "--skip-start"]);
            assertEquals(r.code, 4, r.stderr);
            const j = oneJson(r);
            assertEquals([j.ok, j.exitCode], [false, 4]);
            assertMatch(r.stderr, new RegExp(file.replaceAll(".", "\\.")));
            assertMatch(r.stderr, /evil/);
            assertEquals(await listTree(s.modelsDir), [], "no model folder, no staging left");
            assertEquals(await cortexFiles(s), before, "settings not written");
            assertEquals(
              (await listTree(s.dir)).filter((p) => !p.startsWith("./state")),
              outside.filter((p) => !p.startsWith("./state")),
              "nothing written outside",
            );
            for (const p of ["escape.txt", "escape-dir"]) {
              for (const d of [s.dir, b.root, join(s.dir, "..")]) {
                assertEquals(await snapshot(join(d, p)), undefined, `${d}/${p}`);
              }
            }
            await assertNoSecrets(s, r.stdout, r.stderr);
          });
        }
      });

      await t.step("an archive no checksum covers: exit 4 before anything is loaded", async () => {
        const bundle = join(b.root, `unlisted-${crypto.randomUUID().slice(0, 8)}`);
        const cp = await runCommand("cp", ["-al", b.bundleDir, bundle]);
        assertEquals(cp.code, 0, cp.stderr);
        await Deno.writeFile(
          join(bundle, "models.tar.gz"),
          await gzip(buildTar([{ name: "models/", type: "5" }])),
        );
        const s = await makeSetup(b);
        const args = [...s.args];
        args[args.indexOf("--bundle") + 1] = bundle;
        const before = await cortexFiles(s);
        const t0 = now();
        const r = await runCli(["install", ...args, "--yes", "--json"]);
        assertEquals(r.code, 4, r.stderr);
        assertMatch(r.stderr, /no checksum or pin covers "models\.tar\.gz"/);
        assertMatch(r.stderr, /--allow-unlisted/);
        assertEquals(await countNamespaceLoads(b.ns, t0, now() + 1), 0);
        assertEquals(await cortexFiles(s), before);
        assertEquals(await listTree(s.modelsDir), []);
      });

      await t.step(
        "an image compose interpolates from a key we write: the shipped ref is pinned",
        async () => {
          const s = await makeSetup(b, {
            compose: (c) =>
              c + `\n  engine:\n    image: \${VLLM_IMAGE:-${b.ns}/vllm-openai:latest}\n` +
              `    network_mode: host\n    command: ["sleep", "600"]\n`,
          });
          const root = await Deno.readTextFile(join(s.cortexDir, ".env"));
          assert(!/^VLLM_IMAGE=/m.test(root), "the root .env does not set VLLM_IMAGE yet");
          const r = await runCli(["install", ...s.args, "--yes", "--json", "--skip-start"]);
          assertEquals(r.code, 0, r.stderr);
          const o = parseYaml(await Deno.readTextFile(join(s.cortexDir, OVERRIDE)));
          assertEquals(o.services.engine.image, `${b.ns}/vllm-openai:v0.6.3`);
          const j = oneJson(r);
          assertEquals(
            j.retags.filter((x: { service: string }) => x.service === "engine"),
            [],
            "no retag to :latest",
          );
        },
      );

      await t.step("a service that never gets healthy: exit 6 with its logs", async () => {
        const s = await makeSetup(b, {
          compose: (c) => {
            const marker =
              'test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:${CORTEX_GATEWAY_PORT:-18084}/health"]';
            assert(c.includes(marker));
            return c.replace(marker, 'test: ["CMD-SHELL", "echo cit-never-healthy; exit 1"]');
          },
        });
        const r = await runCli([
          "install",
          ...s.args,
          "--yes",
          "--json",
          "--skip-models",
          "--wait-timeout",
          "4",
        ]);
        assertEquals(r.code, 6, r.stderr);
        assertMatch(r.stderr, /gateway/);
        // The gateway's own log line, in stderr and in the JSON error detail.
        assertMatch(r.stderr, /gateway stand-in on http:\/\/127\.0\.0\.1:\d+/);
        const j = oneJson(r);
        assertEquals([j.ok, j.exitCode, j.error.step], [false, 6, "stack"]);
        assertMatch(j.error.detail, /gateway stand-in on http:\/\/127\.0\.0\.1:\d+/);
        await assertNoSecrets(s, r.stdout, r.stderr);
      });

      await t.step("interactive: asks for the bundle when none is found", async () => {
        const s = await makeSetup(b);
        const args = [...s.args];
        args.splice(args.indexOf("--bundle"), 2);
        const before = await cortexFiles(s);
        const r = await runInteractive(args, ["n", "\r"], [["Bundle not found", [
          s.args[s.args.indexOf("--bundle") + 1],
          "\r",
        ]]]);
        assertEquals(r.code, 130, r.output);
        assertMatch(
          r.output,
          new RegExp(`Plan for Cortex .* from ${s.args[s.args.indexOf("--bundle") + 1]}`),
        );
        assertEquals(await cortexFiles(s), before);
      });

      await t.step("interactive run answered y: the plan, then the install", async () => {
        const s = await makeSetup(b);
        const r = await runInteractive([...s.args, "--skip-start"], ["y", "\r"]);
        assertEquals(r.code, 0, r.output);
        assertMatch(r.output, /Images:/);
        assertMatch(r.output, /skip \(present\)/);
        assertMatch(r.output, /Settings:/);
        assertMatch(r.output, /OFFLINE_MODE: \(unset\) -> True/);
        assertMatch(r.output, /Installed Cortex/);
        const text = await Deno.readTextFile(join(s.cortexDir, BACKEND));
        assertMatch(text, /^OFFLINE_MODE=True$/m);
        assertEquals(await listTree(join(s.modelsDir, "tiny-demo")), [
          "./config.json",
          "./model.safetensors",
          "./tokenizer.json",
        ]);
        await assertNoSecrets(s, r.output);
      });
    } finally {
      await b.cleanup();
    }
  },
});

/**
 * Runs `install` in a pseudo-terminal (`script`), waits for the question, then types `keys`.
 * Returns the exit code and everything the terminal showed.
 */
async function runInteractive(
  args: string[],
  keys: string[],
  /** Earlier questions and their answers, before "Go on with the install?". */
  before: [question: string, keys: string[]][] = [],
): Promise<{ code: number; output: string }> {
  const answers: [string, string[]][] = [...before, ["Go on with the install?", keys]];
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  // A pseudo-terminal made by `script` has no size unless told: dax draws nothing at 0 columns.
  const cmd = "stty cols 120 rows 40; " +
    [Deno.execPath(), "run", "-A", join(REPO, "main.ts"), "install", ...args].map(q).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qec", cmd, "/dev/null"],
    cwd: REPO,
    env: { NO_COLOR: "1", TERM: "xterm" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  let output = "";
  let answered = 0;
  const dec = new TextDecoder();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 60_000);
  const errText = new Response(child.stderr).text();
  for await (const chunk of child.stdout) {
    output += dec.decode(chunk, { stream: true });
    if (answered < answers.length && output.includes(answers[answered][0])) {
      const keys = answers[answered++][1];
      // dax reads a key per read(): "y" and Enter must arrive apart. Keys typed before the
      // prompt switches the terminal to raw mode are flushed, so type after it shows, a beat later.
      (async () => {
        for (const k of keys) {
          await new Promise((r) => setTimeout(r, 300));
          await writer.write(new TextEncoder().encode(k)).catch(() => {});
        }
      })();
    }
  }
  clearTimeout(timer);
  const status = await child.status;
  await writer.close().catch(() => {});
  output += await errText;
  assert(answered === answers.length, `a question never came:\n${output}`);
  return { code: status.code, output };
}

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
