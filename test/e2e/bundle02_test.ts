/**
 * Journeys on Cortex 0.2 bundles (bundle.json + images.json + images/ + models/): `verify`,
 * `load` and `doctor --bundle` run as a user runs them (`deno run -A main.ts ...`), against the
 * real engine, on bundles built by the test in the exact layout Cortex writes (real `docker save`
 * tars of tiny busybox images). One bundle per layout; damaged copies for the failures.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  buildBundle02,
  copyBundle,
  corrupt02,
  type Corruption02,
  DEFAULT_MODEL,
} from "../support/bundle02.ts";
import { imageIdOf, runCli } from "../support/fixtures.ts";
import { runDocker } from "../../src/docker.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

interface VerifyJson {
  ok: boolean;
  bundle: { format: string; formatName: string; cortexVersion?: string; line?: string };
  files: { path: string; verdict: string }[];
  errors: string[];
  uncovered?: string[];
}
interface LoadJson {
  ok: boolean;
  dockerLoads: number;
  images: { file: string; refs: string[]; verdict: string; imageId?: string }[];
}

/** The images of a label the engine holds now. */
async function labelledImages(label: string): Promise<string[]> {
  const r = await runDocker(["images", "-q", "--no-trunc", "--filter", `label=cit=${label}`]);
  return [...new Set(r.stdout.split("\n").map((s) => s.trim()).filter(Boolean))];
}

Deno.test({
  name: "0.2 script bundle journey: verify, load, re-load, doctor --bundle",
  ...opts,
  fn: async () => {
    const b = await buildBundle02({ variant: "script" });
    try {
      const v = await runCli(["verify", "--bundle", b.dir, "--json"]);
      assertEquals(v.code, 0, v.stderr);
      const vj = JSON.parse(v.stdout) as VerifyJson;
      assertEquals(vj.bundle.formatName, "Cortex 0.2 bundle (script)");
      assertEquals([vj.bundle.line, vj.bundle.cortexVersion], ["0.2", "0.2.0"]);
      assertEquals(
        vj.files.map((f) => [f.path, f.verdict]),
        [...b.images.map((i) => [i.file, "ok"]), ["images.json", "ok"]].sort((x, y) =>
          x[0] < y[0] ? -1 : 1
        ),
      );
      assertEquals(vj.uncovered, ["bundle.json", "versions.env", "wheels/"]);
      const human = await runCli(["verify", "--bundle", b.dir]);
      assertEquals(human.code, 0);
      assertMatch(human.stdout, /OK: 4 files checked in .* \(Cortex 0\.2 bundle \(script\)\)/);
      assertMatch(
        human.stdout,
        /note: not covered by any checksum .*bundle\.json, versions\.env, wheels\//,
      );

      const l1 = await runCli(["load", "--bundle", b.dir, "--json"]);
      assertEquals(l1.code, 0, l1.stderr);
      const j1 = JSON.parse(l1.stdout) as LoadJson;
      assertEquals(j1.images.map((i) => i.verdict), ["loaded", "loaded", "loaded"]);
      for (const i of b.images) assertEquals(await imageIdOf(i.ref), i.imageId, i.ref);
      const l2 = await runCli(["load", "--bundle", b.dir, "--json"]);
      assertEquals(l2.code, 0, l2.stderr);
      const j2 = JSON.parse(l2.stdout) as LoadJson;
      assertEquals([j2.dockerLoads, j2.images.map((i) => i.verdict)], [0, [
        "present",
        "present",
        "present",
      ]]);

      const d = await runCli(["doctor", "--bundle", b.dir, "--json"]);
      assert(d.code === 0 || d.code === 3, `doctor exit ${d.code}: ${d.stderr}`);
      const dj = JSON.parse(d.stdout);
      assertEquals(dj.bundle.formatName, "Cortex 0.2 bundle (script)");
      assertEquals(dj.gpu.state, "none");
      assertEquals(dj.checks.find((c: { id: string }) => c.id === "docker.daemon")?.status, "ok");
      assertMatch(d.stderr, /Cortex 0\.2 bundle \(script\)/);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "0.2 Admin-UI bundle journey: the four failures write nothing; then verify, load, doctor",
  ...opts,
  fn: async (t) => {
    const label = `u${crypto.randomUUID().slice(0, 8)}`;
    const p = `cit-${label}`;
    const b = await buildBundle02({
      variant: "admin-ui",
      label,
      cortexVersion: "dev",
      models: [DEFAULT_MODEL],
      dbDump: "-- PostgreSQL database dump\n",
      images: [
        {
          ref: `${p}/vllm-openai:v0.28.0`,
          role: "engine",
          env: ["NVIDIA_REQUIRE_CUDA=cuda>=13.0"],
        },
        {
          ref: `${p}/vllm-openai:v0.28.0-cu129`,
          role: "engine",
          env: ["NVIDIA_REQUIRE_CUDA=cuda>=12.9"],
        },
        // Saved under the name its build gave it: load must tag it as `ref`.
        { ref: `${p}/cortex-gateway:0.2.0`, role: "program", savedAs: `${p}/build/gateway:dev` },
      ],
    });
    try {
      const cases: {
        name: string;
        corrupt: Corruption02;
        code: number;
        names: RegExp;
        load: boolean;
      }[] = [
        {
          name: "a flipped byte in a model file its manifest lists",
          corrupt: { flipModelByte: DEFAULT_MODEL.served },
          code: 4,
          names: /models\/tiny-chat\/files\/Tiny-Chat-1B\/config\.json/,
          load: false, // load reads no model file; verify (and install) refuse the bundle
        },
        {
          name: "a tar missing from images/",
          corrupt: { dropTar: `${p}/cortex-gateway:0.2.0` },
          code: 4,
          names: new RegExp(`images/${p}_cortex-gateway__0\\.2\\.0\\.tar.*missing`),
          load: true,
        },
        {
          name: "a bundle.json of another kind",
          corrupt: { kind: "not-a-cortex-bundle" },
          code: 3,
          names: /bundle\.json.*kind is "not-a-cortex-bundle"/,
          load: true,
        },
        {
          name: "an images.json whose sha256 disagrees with checksums.sha256",
          corrupt: { imagesJson: "disagree" },
          code: 4,
          names: /images\.json lists sha256 000000000000…, checksums\.sha256 lists/,
          load: true,
        },
      ];
      for (const c of cases) {
        await t.step(`${c.name}: exit ${c.code}, the file named, nothing written`, async () => {
          const dir = await copyBundle(b.dir);
          try {
            await corrupt02(dir, c.corrupt);
            const before = await snapshotTree(dir);
            const v = await runCli(["verify", "--bundle", dir, "--json"]);
            assertEquals(v.code, c.code, v.stderr);
            assertMatch(v.stdout + v.stderr, c.names);
            if (c.load) {
              const l = await runCli(["load", "--bundle", dir, "--json"]);
              assertEquals(l.code, c.code, l.stderr);
              assertMatch(l.stdout + l.stderr, c.names);
            }
            assertEquals(await labelledImages(label), [], "no image was loaded");
            assertEquals(await snapshotTree(dir), before, "the bundle is untouched");
          } finally {
            await Deno.remove(dir, { recursive: true });
          }
        });
      }

      await t.step("the intact bundle verifies, with what is not covered said", async () => {
        const v = await runCli(["verify", "--bundle", b.dir, "--json"]);
        assertEquals(v.code, 0, v.stderr);
        const vj = JSON.parse(v.stdout) as VerifyJson;
        assertEquals(vj.bundle.formatName, "Cortex 0.2 bundle (Admin UI)");
        assertEquals(vj.bundle.cortexVersion, "dev");
        assert(vj.files.every((f) => f.verdict === "ok"), JSON.stringify(vj.files));
        assert(vj.files.some((f) => f.path === "db/cortex.sql"));
        assertEquals(vj.files.filter((f) => f.path.startsWith("models/")).length, 2);
        assertEquals(vj.uncovered, ["bundle.json", "models/tiny-chat/manifest.json"]);
      });

      await t.step("load tags the tar saved under another name as its ref", async () => {
        const l = await runCli(["load", "--bundle", b.dir, "--json"]);
        assertEquals(l.code, 0, l.stderr);
        const j = JSON.parse(l.stdout) as LoadJson;
        assertEquals(j.images.map((i) => i.verdict), ["loaded", "loaded", "loaded"]);
        for (const i of b.images) assertEquals(await imageIdOf(i.ref), i.imageId, i.ref);
        const gw = j.images.find((i) => i.file.includes("cortex-gateway"))!;
        assertEquals(gw.refs.sort(), [`${p}/build/gateway:dev`, `${p}/cortex-gateway:0.2.0`]);
      });

      await t.step(
        "doctor --bundle with a recorded driver picks the vLLM build it runs",
        async () => {
          const bin = await Deno.makeTempDir({ prefix: "cit-fake-smi-" });
          try {
            const banner = new URL("../../src/doctor/testdata/smi-591.59-wddm.txt", import.meta.url)
              .pathname;
            // A stand-in `nvidia-smi` that prints a recorded real output (driver 591.59, CUDA 13.1).
            await Deno.writeTextFile(
              `${bin}/nvidia-smi`,
              `#!/bin/sh\ncase "$1" in\n  --query-gpu=*) echo "0, NVIDIA GeForce RTX 4050 Laptop GPU, 591.59, 6141 MiB, 8.9" ;;\n  *) cat "${banner}" ;;\nesac\n`,
            );
            await Deno.chmod(`${bin}/nvidia-smi`, 0o755);
            const d = await runCli(["doctor", "--bundle", b.dir, "--json"], {
              env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
            });
            assert(d.code === 0 || d.code === 3, `doctor exit ${d.code}: ${d.stderr}`);
            const dj = JSON.parse(d.stdout);
            assertEquals([dj.gpu.state, dj.gpu.driverVersion, dj.gpu.cudaVersion], [
              "ok",
              "591.59",
              "13.1",
            ]);
            const vllm = dj.gpu.engines.engines[0];
            assertEquals(vllm.chosen.ref, `${p}/vllm-openai:v0.28.0`);
            assertEquals(vllm.notNeeded.map((x: { ref: string }) => x.ref), [
              `${p}/vllm-openai:v0.28.0-cu129`,
            ]);
            const cu = dj.checks.find((c: { id: string }) => c.id.endsWith("v0.28.0-cu129.tar"));
            assertEquals(cu.status, "ok");
            assertMatch(cu.detail, /not needed on this host/);
          } finally {
            await Deno.remove(bin, { recursive: true });
          }
        },
      );
    } finally {
      await b.cleanup();
    }
  },
});

/** Every path under `dir` with its size and mtime: to show a run wrote nothing there. */
async function snapshotTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.lstat(`${dir}/${r}`);
      out.push(`${r} ${st.size} ${st.mtime?.getTime()}`);
      if (e.isDirectory) await walk(r);
    }
  };
  await walk("");
  return out.sort();
}
