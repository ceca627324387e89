import { assert, assertEquals, assertMatch } from "../../test/support/assert.ts";
import { parseSmiVersions } from "../doctor/gpu.ts";
import type { BundleImage, TarIndex } from "../bundle/types.ts";
import {
  chooseEngines,
  type DriverFacts,
  engineChecks,
  type EngineVariant,
  isEngine,
  judgeVariant,
  minDriverForCuda,
  tableTagFor,
  variantOf,
} from "./engines.ts";

/** Driver facts from a recorded real `nvidia-smi` banner (src/doctor/testdata). */
function driverFrom(file: string): DriverFacts {
  const v = parseSmiVersions(
    Deno.readTextFileSync(new URL(`../doctor/testdata/${file}`, import.meta.url)),
  );
  return { state: "ok", ...v };
}

// NVIDIA_REQUIRE_CUDA as nvidia/cuda base images declare it (synthesized values, real shape).
const V028: EngineVariant = {
  file: "images/vllm_vllm-openai__v0.28.0.tar",
  ref: "vllm/vllm-openai:v0.28.0",
  repository: "vllm/vllm-openai",
  tag: "v0.28.0",
  role: "vllm",
  require: "cuda>=13.0",
};
const CU129: EngineVariant = {
  file: "images/vllm_vllm-openai__v0.28.0-cu129.tar",
  ref: "vllm/vllm-openai:v0.28.0-cu129",
  repository: "vllm/vllm-openai",
  tag: "v0.28.0-cu129",
  role: "vllm",
  require: "cuda>=12.9 brand=tesla,driver>=535,driver<536 brand=tesla,driver>=550,driver<551",
};
const V024: EngineVariant = {
  file: "images/vllm_vllm-openai__v0.24.0-ubuntu2404.tar",
  ref: "vllm/vllm-openai:v0.24.0-ubuntu2404",
  repository: "vllm/vllm-openai",
  tag: "v0.24.0-ubuntu2404",
  role: "vllm",
  require: "cuda>=12.8",
};
const LLAMA: EngineVariant = {
  file: "images/ghcr.io_ggml-org_llama.cpp__server-cuda-b10731.tar",
  ref: "ghcr.io/ggml-org/llama.cpp:server-cuda-b10731",
  repository: "ghcr.io/ggml-org/llama.cpp",
  tag: "server-cuda-b10731",
  role: "llamacpp",
  require: "cuda>=12.8",
};

Deno.test("chooseEngines() on recorded drivers picks the vLLM build each one runs", async (t) => {
  const cases: { smi: string; variants: EngineVariant[]; chosen?: string; error?: RegExp }[] = [
    {
      smi: "smi-591.59-wddm.txt", // driver 591.59, CUDA 13.1
      variants: [V028, CU129],
      chosen: V028.ref,
    },
    {
      smi: "smi-570.86.16-rtx6000ada.txt", // 570.86.16, CUDA 12.8: neither 13.0 nor 12.9
      variants: [V028, CU129, V024],
      chosen: V024.ref,
    },
    {
      smi: "smi-570.86.16-rtx6000ada.txt",
      variants: [V028, CU129],
      error:
        /"vllm\/vllm-openai": none of its 2 image\(s\) in the bundle runs on NVIDIA driver 570\.86\.16 \(CUDA 12\.8\)/,
    },
    {
      smi: "smi-545.29.06-quadro-p4000.txt", // 545.29.06, CUDA 12.3: below Cortex's table
      variants: [V028, CU129, V024],
      error: /driver 545\.29\.06 \(CUDA 12\.3\).*needs CUDA 13\.0/,
    },
    {
      smi: "smi-331.62-gtx680-multi.txt", // no CUDA field: driver version against CUDA's minimum
      variants: [V028],
      error: /needs CUDA 13\.0 \(driver >= 580\.65\.06\), the driver is 331\.62/,
    },
  ];
  for (const c of cases) {
    await t.step(`${c.smi}: ${c.variants.map((v) => v.tag).join(", ")}`, () => {
      const r = chooseEngines(c.variants, driverFrom(c.smi));
      assertEquals(r.selected, true);
      const e = r.engines[0];
      if (c.error) {
        assertEquals(e.chosen, undefined);
        assertMatch(e.error!.message, c.error);
        assertMatch(
          e.error!.hint,
          /driver >= 580: vllm\/vllm-openai:v0\.28\.0.*575\.51-579.*550-575\.50.*below 550: upgrade/,
        );
        assertEquals(r.error, e.error);
        return;
      }
      assertEquals(e.chosen?.ref, c.chosen);
      assertEquals(
        e.notNeeded.map((v) => v.ref).sort(),
        c.variants.map((v) => v.ref).filter((r) => r !== c.chosen).sort(),
      );
      assertEquals(r.error, undefined);
    });
  }
});

Deno.test("chooseEngines(): the preferred ref wins among those that run; the newest CUDA otherwise", () => {
  const d = driverFrom("smi-591.59-wddm.txt");
  assertEquals(chooseEngines([CU129, V028], d).engines[0].chosen?.ref, V028.ref);
  assertEquals(chooseEngines([CU129, V028], d, [CU129.ref]).engines[0].chosen?.ref, CU129.ref);
});

Deno.test("chooseEngines(): engines are chosen apart (vLLM and llama.cpp)", () => {
  const r = chooseEngines([V028, LLAMA, CU129], driverFrom("smi-591.59-wddm.txt"));
  assertEquals(r.engines.map((e) => [e.repository, e.chosen?.ref]), [
    ["vllm/vllm-openai", V028.ref],
    ["ghcr.io/ggml-org/llama.cpp", LLAMA.ref],
  ]);
});

Deno.test("chooseEngines(): without a working GPU nothing is chosen and nothing fails", () => {
  for (const state of ["none", "driver-failed"] as const) {
    const r = chooseEngines([V028, CU129], { state });
    assertEquals(r.selected, false);
    assertEquals(r.engines[0].chosen, undefined);
    assertEquals(r.engines[0].notNeeded, []);
    assertEquals(r.error, undefined);
    assertEquals(engineChecks(r).checks, []);
  }
});

Deno.test("judgeVariant(): an image without NVIDIA_REQUIRE_CUDA is judged by Cortex's table", () => {
  const d = driverFrom("smi-570.86.16-rtx6000ada.txt");
  const noReq = (v: EngineVariant): EngineVariant => ({ ...v, require: undefined });
  assertEquals(judgeVariant(noReq(V028), d).verdict, "fail");
  assertEquals(judgeVariant(noReq(V028), d).by, "table");
  assertEquals(judgeVariant(noReq(CU129), d).verdict, "fail", "575.51 > 570.86");
  assertEquals(judgeVariant(noReq(V024), d).verdict, "ok");
  assertEquals(judgeVariant(noReq(LLAMA), d).verdict, "unknown");
});

Deno.test("judgeVariant(): a datacenter driver with forward compatibility only may run (warn)", () => {
  const d: DriverFacts = { state: "ok", driverVersion: "550.54.15", cudaVersion: "12.4" };
  const j = judgeVariant(CU129, d);
  assertEquals(j.verdict, "warn");
  const r = chooseEngines([V028, CU129], d);
  assertEquals(r.engines[0].chosen?.ref, CU129.ref);
  const ck = engineChecks(r).checks;
  assertEquals(ck.map((c) => c.status), ["ok", "warn"]);
});

Deno.test("tableTagFor() and minDriverForCuda() follow the tables", () => {
  assertEquals(tableTagFor("591.59"), "v0.28.0");
  assertEquals(tableTagFor("580.65.06"), "v0.28.0");
  assertEquals(tableTagFor("575.51.03"), "v0.28.0-cu129");
  assertEquals(tableTagFor("570.86.16"), "v0.24.0-ubuntu2404");
  assertEquals(tableTagFor("545.29.06"), null);
  assertEquals(minDriverForCuda("12.9"), "575.51.03");
  assertEquals(minDriverForCuda("13.0"), "580.65.06");
  assertEquals(minDriverForCuda("9.0"), undefined);
});

Deno.test("engineChecks(): the chosen one is ok, the others are 'not needed on this host'", () => {
  const r = chooseEngines([V028, CU129], driverFrom("smi-591.59-wddm.txt"));
  const { checks, files } = engineChecks(r);
  assertEquals(checks.map((c) => [c.id, c.status]), [
    [`gpu.cuda.${V028.file}`, "ok"],
    [`gpu.cuda.${CU129.file}`, "ok"],
  ]);
  assertMatch(
    checks[1].detail,
    /not needed on this host \("vllm\/vllm-openai:v0\.28\.0" runs here\)/,
  );
  assertEquals([...files].sort(), [CU129.file, V028.file].sort());
  const bad = engineChecks(chooseEngines([V028], driverFrom("smi-545.29.06-quadro-p4000.txt")));
  assertEquals(bad.checks.map((c) => c.status), ["fail"]);
  assert(bad.checks[0].hint?.includes("Cortex's driver table"));
});

Deno.test("variantOf() and isEngine() read what the bundle and the tar say", () => {
  const img: BundleImage = {
    file: "images/x.tar",
    declaredRefs: ["cit-x/vllm-openai:v0.28.0-cu129"],
    critical: true,
    bundleRole: "engine",
  };
  assert(isEngine(img));
  assert(
    !isEngine({
      file: "images/p.tar",
      declaredRefs: ["postgres:16"],
      critical: true,
      bundleRole: "infra",
    }),
  );
  const index: TarIndex = {
    layout: "legacy",
    compressed: false,
    entrySizes: {},
    images: [{
      repoTags: ["cit-x/vllm-openai:v0.28.0-cu129"],
      imageId: "sha256:" + "1".repeat(64),
      diffIds: [],
      layerPaths: [],
      env: ["PATH=/bin", "NVIDIA_REQUIRE_CUDA=cuda>=12.9"],
    }],
  };
  assertEquals(variantOf(img, index), {
    file: "images/x.tar",
    ref: "cit-x/vllm-openai:v0.28.0-cu129",
    repository: "cit-x/vllm-openai",
    tag: "v0.28.0-cu129",
    require: "cuda>=12.9",
  });
  const broken = variantOf(img, new Error("not a tar"));
  assertEquals(broken.readError, "not a tar");
  assertEquals(judgeVariant(broken, driverFrom("smi-591.59-wddm.txt")).verdict, "unknown");
});
