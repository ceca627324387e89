import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../test/support/assert.ts";
import { parseReleaseManifest } from "./bundle/release.ts";
import { createContext } from "./context.ts";
import {
  buildDemo,
  DEMO_IMAGES,
  demoRef,
  demoScriptManifest,
  renderChecksums,
  tinySafetensors,
} from "./demo.ts";
import { inspectImages, processDocker, runCommand, runDocker } from "./docker.ts";

Deno.test("demoScriptManifest() has Cortex's script shape", () => {
  // deno-lint-ignore no-explicit-any
  const m = demoScriptManifest(new Date("2026-01-18T12:00:00.123Z"), "ns") as any;
  assertEquals(m.created, "2026-01-18T12:00:00Z");
  assertEquals(m.images.engines.map((e: Record<string, string>) => [e.name, e.version, e.tag]), [
    ["ns/vllm-openai", "v0.6.3", undefined],
    ["ns/llama.cpp", undefined, "server-cuda"],
  ]);
  assertEquals(
    m.images.infrastructure.map((e: Record<string, string>) => [e.name, e.file]),
    [
      ["ns/postgres:16", "postgres-16.tar"],
      ["ns/redis:7", "redis-7.tar"],
      ["ns/cortex-gateway:latest", "cortex-gateway.tar"],
      ["ns/prometheus:v2.47.0", "prometheus-v2.47.0.tar"],
    ],
  );
});

Deno.test("renderChecksums() writes sorted sha256sum lines", () => {
  const a = "a".repeat(64);
  const b = "b".repeat(64);
  assertEquals(
    renderChecksums([{ path: "z.tar", sha256: a }, { path: "models/m/c.json", sha256: b }]),
    `${b}  models/m/c.json\n${a}  z.tar\n`,
  );
});

Deno.test("tinySafetensors() is a valid safetensors file", () => {
  const f = tinySafetensors();
  const n = Number(new DataView(f.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(f.subarray(8, 8 + n)));
  assertEquals(header.weight.data_offsets, [0, 16]);
  assertEquals(f.length, 8 + n + 16);
  assertEquals(n % 8, 0);
});

Deno.test("the demo release manifest is valid and points at the demo gateway", async () => {
  const m = parseReleaseManifest(
    await Deno.readTextFile(new URL("../assets/demo/release.json", import.meta.url)),
    "release.json",
  );
  assertEquals(m.readiness[0].url, "http://127.0.0.1:18084/health");
  assert(m.images.every((i) => i.repository.startsWith("cortex-demo/")));
});

const hasEngine = (await runDocker(["info", "--format", "{{.ServerVersion}}"])).code === 0;

Deno.test({
  name: "buildDemo() writes a bundle whose checksums verify and leaves no new image behind",
  ignore: !hasEngine,
  fn: async (t) => {
    const ns = `cit-demo-${crypto.randomUUID().slice(0, 8)}`;
    const dir = await Deno.makeTempDir({ prefix: "cit-demo-" });
    const lines: string[] = [];
    const ctx = createContext({ sink: { write: (s) => void lines.push(s), isTTY: false } });
    const refs = DEMO_IMAGES.map((i) => demoRef(i, ns));
    try {
      const r = await buildDemo(ctx, dir, { namespace: ns });
      await t.step("sha256sum -c accepts checksums.sha256", async () => {
        assert(r.built);
        const c = await runCommand("sha256sum", ["-c", "checksums.sha256"], { cwd: r.bundleDir });
        assertEquals(c.code, 0, c.stderr);
        const ok = c.stdout.split("\n").filter((l) => l.endsWith(": OK"));
        assertEquals(ok.length, DEMO_IMAGES.length + 3);
        assertMatch(c.stdout, /models\/tiny-demo\/model\.safetensors: OK/);
      });
      await t.step(
        "each tar is a docker save of its ref, and the engine no longer has it",
        async () => {
          for (const img of DEMO_IMAGES) {
            const x = await runCommand("tar", [
              "-xOf",
              join(r.bundleDir, img.file),
              "manifest.json",
            ]);
            assertEquals(JSON.parse(x.stdout)[0].RepoTags, [demoRef(img, ns)]);
          }
          assertEquals((await inspectImages(processDocker(), refs)).size, 0);
        },
      );
      await t.step("Cortex dir, release manifest and target dirs are in place", async () => {
        for (
          const f of [
            "Cortex/docker.compose.prod.yaml",
            "Cortex/backend/.env",
            "Cortex/backend/.env.prod",
            "release.json",
          ]
        ) {
          assert((await Deno.stat(join(dir, f))).isFile, f);
        }
        for (const d of [r.modelsDir, r.hfCacheDir, r.stateDir]) {
          assert((await Deno.stat(d)).isDirectory);
        }
      });
      await t.step("a second run reuses the complete bundle", async () => {
        const again = await buildDemo(ctx, dir, { namespace: ns });
        assertEquals(again.built, false);
      });
      await t.step("an image already in the engine is saved as it is and kept", async () => {
        const pg = DEMO_IMAGES.find((i) => i.repo === "postgres")!;
        const ref = demoRef(pg, ns);
        const load = await runCommand("sh", [
          "-c",
          `docker load -i "$1" >/dev/null`,
          "sh",
          join(r.bundleDir, pg.file),
        ]);
        assertEquals(load.code, 0, load.stderr);
        const id = (await inspectImages(processDocker(), [ref])).get(ref)!.id;
        await buildDemo(ctx, dir, { namespace: ns, force: true });
        assertEquals((await inspectImages(processDocker(), [ref])).get(ref)?.id, id);
        assertEquals((await inspectImages(processDocker(), refs)).size, 1);
      });
    } finally {
      for (const ref of refs) await runDocker(["rmi", ref]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
