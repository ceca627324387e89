import { assertEquals, assertMatch } from "../../test/support/assert.ts";
import { createContext } from "../context.ts";
import type { Bundle, TarIndex } from "../bundle/types.ts";
import { type DoctorDeps, estimateImageBytes, runDoctor } from "./mod.ts";
import type { RunResult } from "./types.ts";
import { GiB } from "./disk.ts";

const td = (name: string) => Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));
const quiet = () =>
  createContext({ sink: { write: () => {}, isTTY: false }, env: {}, interactive: false });

function bundle(): Bundle {
  return {
    dir: "/b",
    format: "script",
    files: [
      {
        path: "vllm-openai-v0.6.3.tar",
        abs: "/b/vllm-openai-v0.6.3.tar",
        size: 8 * GiB,
        kind: "image",
      },
      { path: "postgres-16.tar", abs: "/b/postgres-16.tar", size: 1 * GiB, kind: "image" },
    ],
    images: [
      {
        file: "vllm-openai-v0.6.3.tar",
        declaredRefs: ["vllm/vllm-openai:v0.6.3"],
        critical: true,
        role: "vllm",
      },
      { file: "postgres-16.tar", declaredRefs: ["postgres:16"], critical: true },
    ],
    models: [],
    hasChecksums: true,
    unlisted: [],
    missing: [],
    warnings: [],
  };
}

/** A host with a GPU whose driver supports CUDA `cuda`, `free` bytes on one disk, port 9090 held. */
function deps(cuda: string, free: number): Partial<DoctorDeps> {
  const run = (cmd: string, args: string[]): Promise<RunResult> => {
    const key = [cmd, ...args].join(" ");
    const ok = (stdout: string) => Promise.resolve({ code: 0, stdout, stderr: "" });
    if (key.startsWith("docker info")) {
      const j = JSON.parse(td("docker-info-20.10-root.json"));
      j.Runtimes.nvidia = { path: "nvidia-container-runtime" };
      return ok(JSON.stringify(j));
    }
    if (key.startsWith("docker ps")) return ok("");
    if (key.startsWith("nvidia-smi --query-gpu")) {
      return ok("0, NVIDIA A100-SXM4-40GB, 515.65.01, 40960 MiB, 8.0\n");
    }
    if (key === "nvidia-smi") return ok(td("smi-515.65.01-a100-multi.txt").replace("11.7", cuda));
    if (cmd === "df") return ok(`Avail Mounted on\n${free} /\n`);
    return Promise.resolve({ code: 127, stdout: "", stderr: "not found" });
  };
  return {
    run,
    compose: () =>
      Promise.resolve({ cmd: ["docker", "compose"], version: "2.29.1", major: 2 as const }),
    inspect: (refs) =>
      Promise.resolve(
        new Map(
          refs.filter((r) => r === "postgres:16").map((r) => [r, {
            id: "sha256:1",
            repoTags: [r],
            size: 1,
            layers: [],
            env: [],
          }]),
        ),
      ),
    readTarIndex: (): Promise<TarIndex> =>
      Promise.resolve({
        layout: "legacy",
        compressed: false,
        entrySizes: {},
        images: [{
          repoTags: ["vllm/vllm-openai:v0.6.3"],
          imageId: "sha256:2",
          diffIds: [],
          layerPaths: [],
          env: ["NVIDIA_REQUIRE_CUDA=cuda>=12.4 brand=tesla,driver>=470,driver<471"],
        }],
      }),
    probes: {
      route: () => Promise.resolve({ ok: false, detail: "none" }),
      dns: () => Promise.resolve({ ok: false, detail: "x" }),
      connect: () => Promise.resolve({ ok: false, detail: "x" }),
    },
    stat: (p) => Promise.resolve(p === "/" || p === "/var/lib/docker" ? { dev: 1 } : undefined),
    listen: (_h, port) => (port === 9090 ? "in-use" : "free"),
    processOf: () => Promise.resolve("pid 7 (prometheus)"),
    readText: () => Promise.resolve(undefined),
    uid: () => 0,
  };
}

Deno.test("estimateImageBytes() counts only images not present, plus the largest tar", async () => {
  const d = deps("12.4", 0);
  const e = await estimateImageBytes(bundle(), d.inspect!);
  assertEquals(e, { imageBytes: 8 * GiB, tempBytes: 8 * GiB, missing: ["vllm-openai-v0.6.3.tar"] });
});

Deno.test("runDoctor() on a simulated GPU host", async (t) => {
  await t.step("everything fine but port 9090: fails on ports only", async () => {
    const r = await runDoctor(quiet(), { bundle: bundle() }, deps("12.4", 200 * GiB));
    const status = Object.fromEntries(r.checks.map((c) => [c.id, c.status]));
    assertEquals(status, {
      "docker.daemon": "ok",
      "docker.compose": "ok",
      "disk./": "ok",
      gpu: "ok",
      "gpu.runtime": "ok",
      "gpu.cuda.vllm-openai-v0.6.3.tar": "ok",
      network: "ok",
      ports: "fail",
    });
    assertEquals(r.ok, false);
    assertEquals(r.network.mode, "offline");
    assertEquals(r.gpu.cudaVersion, "12.4");
    assertEquals(r.disk[0].needBytes, 16 * GiB + 16 * 1024 ** 2);
    assertMatch(
      r.checks.find((c) => c.id === "ports")!.detail,
      /9090 is held by pid 7 \(prometheus\)/,
    );
  });
  await t.step("old driver and a small disk: CUDA and disk fail", async () => {
    const r = await runDoctor(
      quiet(),
      { bundle: bundle(), network: "online" },
      deps("11.7", 10 * GiB),
    );
    const status = Object.fromEntries(r.checks.map((c) => [c.id, c.status]));
    assertEquals(status["gpu.cuda.vllm-openai-v0.6.3.tar"], "fail");
    assertEquals(status["disk./"], "fail");
    assertEquals(r.network, {
      mode: "online",
      reason: "forced by --online",
      forced: true,
      probes: [],
    });
    assertMatch(
      r.checks.find((c) => c.id === "gpu.cuda.vllm-openai-v0.6.3.tar")!.detail,
      /needs CUDA 12\.4, the driver 515\.65\.01 supports only 11\.7/,
    );
  });
});
