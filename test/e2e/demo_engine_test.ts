/**
 * buildDemo() and buildDemo02() against the real engine: the demo bundles are real `docker save`
 * tars whose checksums `sha256sum -c` (0.1) and `verify` (0.2) accept, and building them leaves
 * no new image in the engine.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { createContext } from "../../src/context.ts";
import { buildDemo, DEMO_IMAGES, demoRef } from "../../src/demo.ts";
import { inspectImages, processDocker, runCommand, runDocker } from "../../src/docker.ts";
import { buildDemo02, DEMO02_IMAGES, demo02Ref } from "../../src/demo02.ts";
import { runCli } from "../support/fixtures.ts";

Deno.test({
  name: "buildDemo() writes a bundle whose checksums verify and leaves no new image behind",
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

Deno.test({
  name: "buildDemo02() writes a Cortex 0.2 bundle that `verify` accepts, and no image is left",
  fn: async () => {
    const ns = `cit-demo02-${crypto.randomUUID().slice(0, 8)}`;
    const dir = await Deno.makeTempDir({ prefix: "cit-demo02-" });
    const ctx = createContext({ sink: { write: () => {}, isTTY: false } });
    const refs = DEMO02_IMAGES.map((i) => demo02Ref(i, ns));
    try {
      const r = await buildDemo02(ctx, dir, { namespace: ns });
      const v = await runCli(["verify", "--bundle", r.bundleDir, "--json"]);
      assertEquals(v.code, 0, v.stderr);
      const j = JSON.parse(v.stdout);
      assertEquals([j.bundle.formatName, j.bundle.cortexVersion], [
        "Cortex 0.2 bundle (Admin UI)",
        "0.2.0",
      ]);
      assertEquals(j.files.filter((f: { path: string }) => f.path.startsWith("images/")).length, 6);
      assertEquals((await Deno.stat(r.passwordFile)).mode! & 0o777, 0o600);
      assertMatch(
        await Deno.readTextFile(join(r.cortexDir, "docker.compose.prod.yaml")),
        new RegExp(`${ns}/cortex-gateway`),
      );
      assertEquals((await inspectImages(processDocker(), refs)).size, 0);
    } finally {
      for (const ref of refs) await runDocker(["rmi", ref]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
