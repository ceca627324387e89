import { assert, assertEquals } from "../../test/support/assert.ts";
import {
  detectGpu,
  gpuChecks,
  isSmiDriverFailure,
  judgeCuda,
  parseProcDriverVersion,
  parseQueryGpuCsv,
  parseRequireCuda,
  parseSmiVersions,
  requireCudaFromEnv,
} from "./gpu.ts";
import type { RunResult } from "./types.ts";

const td = (name: string) => Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));

Deno.test("parseSmiVersions() reads real nvidia-smi banners and -q outputs", async (t) => {
  const cases: [string, string | undefined, string | undefined][] = [
    ["smi-331.62-gtx680-multi.txt", "331.62", undefined],
    ["smi-470.57.02-titanv-multi.txt", "470.57.02", "11.4"],
    ["smi-515.65.01-a100-multi.txt", "515.65.01", "11.7"],
    ["smi-545.29.06-quadro-p4000.txt", "545.29.06", "12.3"],
    ["smi-570.86.16-rtx6000ada.txt", "570.86.16", "12.8"],
    ["smi-591.59-wddm.txt", "591.59", "13.1"],
    ["smi-q-510.06-4gpu.txt", "510.06", "11.6"],
    ["smi-q-450.66-gtx780.txt", "450.66", "11.0"],
    ["smi-q-396.54-nocuda.txt", "396.54", undefined],
    ["smi-failed-driver.txt", undefined, undefined],
  ];
  for (const [file, driver, cuda] of cases) {
    await t.step(file, () => {
      const v = parseSmiVersions(td(file));
      assertEquals(v.driverVersion, driver);
      assertEquals(v.cudaVersion, cuda);
    });
  }
});

Deno.test("parseQueryGpuCsv() reads real --query-gpu outputs", async (t) => {
  await t.step("with a header row, columns in another order, two different GPUs", () => {
    assertEquals(parseQueryGpuCsv(td("smi-query-570.86.15-header.csv")), [
      { index: 0, name: "NVIDIA TITAN V", driverVersion: "570.86.15", computeCap: "7.0" },
      {
        index: 1,
        name: "NVIDIA RTX 5880 Ada Generation",
        driverVersion: "570.86.15",
        computeCap: "8.9",
      },
    ]);
  });
  await t.step("noheader,nounits with N/A, given the field list", () => {
    const fields = [
      "power.limit",
      "power.min_limit",
      "power.max_limit",
      "memory.total",
      "vbios_version",
      "driver_version",
      "name",
      "gpu_uuid",
      "power.draw",
      "temperature.gpu",
      "temperature.memory",
      "clocks.current.graphics",
      "clocks.sm",
      "clocks.mem",
      "utilization.gpu",
      "utilization.memory",
      "fan.speed",
      "pcie.link.width.current",
      "pstate",
    ];
    assertEquals(parseQueryGpuCsv(td("smi-query-440.64-nounits-na.csv"), fields), [
      { name: "GeForce RTX 2080", driverVersion: "440.64", memoryMiB: 7979 },
    ]);
  });
  await t.step("compute_cap alone, with header", () => {
    assertEquals(parseQueryGpuCsv(td("smi-query-compute-cap-8.9.csv")), [{ computeCap: "8.9" }]);
  });
  await t.step("our own field order, units and N/A", () => {
    assertEquals(
      parseQueryGpuCsv(
        "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB, 9.0\n1, NVIDIA A100-SXM4-40GB, 550.54.15, [N/A], N/A\n",
      ),
      [
        {
          index: 0,
          name: "NVIDIA H100 80GB HBM3",
          driverVersion: "550.54.15",
          memoryMiB: 81559,
          computeCap: "9.0",
        },
        { index: 1, name: "NVIDIA A100-SXM4-40GB", driverVersion: "550.54.15" },
      ],
    );
  });
  await t.step("an error message gives no GPUs", () => {
    assertEquals(parseQueryGpuCsv(td("smi-failed-driver.txt")), []);
  });
});

Deno.test("isSmiDriverFailure() recognises the driver failure", () => {
  assert(isSmiDriverFailure(td("smi-failed-driver.txt")));
  assert(!isSmiDriverFailure(td("smi-545.29.06-quadro-p4000.txt")));
});

Deno.test("parseProcDriverVersion() reads proprietary, open and Jetson modules", async (t) => {
  const cases: [string, { version: string; open: boolean }][] = [
    ["proc-driver-version-384.98.txt", { version: "384.98", open: false }],
    ["proc-driver-version-565.57.01-open.txt", { version: "565.57.01", open: true }],
    ["proc-driver-version-jetson.txt", { version: "35.3.1", open: true }],
  ];
  for (const [file, want] of cases) {
    await t.step(file, () => assertEquals(parseProcDriverVersion(td(file)), want));
  }
  await t.step("garbage", () => assertEquals(parseProcDriverVersion("hello"), undefined));
});

Deno.test("parseRequireCuda() splits alternatives and conditions", () => {
  const v = parseRequireCuda(
    "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=535,driver<536",
  );
  assertEquals(v.cuda, "12.4");
  assertEquals(v.alternatives.length, 3);
  assertEquals(v.alternatives[1], { brand: "tesla", driver: [[">=", "470"], ["<", "471"]] });
});

Deno.test("judgeCuda() compares the image's cuda>= with the driver", async (t) => {
  const req = "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=tesla,driver>=535,driver<536";
  const cases: [string, string | undefined, string | undefined, string | undefined, string][] = [
    ["newer driver", req, "12.8", "570.86.16", "ok"],
    ["equal", req, "12.4", "550.54.15", "ok"],
    ["older driver", req, "11.7", "515.65.01", "fail"],
    ["older, but a tesla compat range matches", req, "12.2", "535.86.10", "warn"],
    ["12.10 > 12.4 numerically", "cuda>=12.4", "12.10", "999", "ok"],
    ["no requirement", undefined, "12.4", "550", "unknown"],
    ["no driver CUDA", req, undefined, undefined, "unknown"],
  ];
  for (const [name, r, cuda, drv, verdict] of cases) {
    await t.step(name, () => assertEquals(judgeCuda(r, cuda, drv).verdict, verdict));
  }
});

Deno.test("requireCudaFromEnv() honours NVIDIA_DISABLE_REQUIRE", () => {
  assertEquals(requireCudaFromEnv(["PATH=/bin", "NVIDIA_REQUIRE_CUDA=cuda>=12.1"]), "cuda>=12.1");
  assertEquals(
    requireCudaFromEnv(["NVIDIA_REQUIRE_CUDA=cuda>=12.1", "NVIDIA_DISABLE_REQUIRE=true"]),
    undefined,
  );
  assertEquals(requireCudaFromEnv(["PATH=/bin"]), undefined);
});

function fakeRun(table: Record<string, RunResult>) {
  const calls: string[] = [];
  return {
    calls,
    run: (cmd: string, args: string[]) => {
      const key = [cmd, ...args].join(" ");
      calls.push(key);
      for (const [k, v] of Object.entries(table)) if (key.startsWith(k)) return Promise.resolve(v);
      return Promise.resolve({ code: 127, stdout: "", stderr: `${cmd}: command not found` });
    },
  };
}
const ok = (stdout: string): RunResult => ({ code: 0, stdout, stderr: "" });

Deno.test("detectGpu() on recorded outputs", async (t) => {
  await t.step("no nvidia-smi, no module: none", async () => {
    const f = fakeRun({});
    const g = await detectGpu({ run: f.run, readText: () => Promise.resolve(undefined) });
    assertEquals(g.state, "none");
    assertEquals(g.gpus, []);
  });
  await t.step("working driver: GPUs from CSV, CUDA from the banner", async () => {
    const f = fakeRun({
      "nvidia-smi --query-gpu": ok(
        "0, NVIDIA RTX 6000 Ada Generation, 570.86.16, 49140 MiB, 8.9\n",
      ),
      "nvidia-smi": ok(td("smi-570.86.16-rtx6000ada.txt")),
    });
    const g = await detectGpu({ run: f.run, readText: () => Promise.resolve(undefined) }, true);
    assertEquals(g.state, "ok");
    assertEquals(g.cudaVersion, "12.8");
    assertEquals(g.driverVersion, "570.86.16");
    assertEquals(g.gpus[0].memoryMiB, 49140);
    assertEquals(g.nvidiaRuntime, true);
  });
  await t.step(
    "driver before 510 refuses compute_cap: retried without it; CUDA from -q",
    async () => {
      let asked = 0;
      const run = (cmd: string, args: string[]): Promise<RunResult> => {
        const key = [cmd, ...args].join(" ");
        if (key.includes("--query-gpu")) {
          asked++;
          return Promise.resolve(
            key.includes("compute_cap")
              ? { code: 2, stdout: td("smi-query-compute-cap-invalid-470.txt"), stderr: "" }
              : ok("0, GeForce GTX 1080, 396.54, 8119 MiB\n"),
          );
        }
        if (key === "nvidia-smi -q") return Promise.resolve(ok(td("smi-q-450.66-gtx780.txt")));
        return Promise.resolve(ok("no banner here"));
      };
      const g = await detectGpu({ run, readText: () => Promise.resolve(undefined) });
      assertEquals(asked, 2);
      assertEquals(g.state, "ok");
      assertEquals(g.gpus, [{
        index: 0,
        name: "GeForce GTX 1080",
        driverVersion: "396.54",
        memoryMiB: 8119,
      }]);
      assertEquals(g.cudaVersion, "11.0");
    },
  );
  await t.step("driver cannot be reached: driver-failed, module version kept", async () => {
    const f = fakeRun({
      "nvidia-smi": { code: 9, stdout: td("smi-failed-driver.txt"), stderr: "" },
    });
    const g = await detectGpu({
      run: f.run,
      readText: () => Promise.resolve(td("proc-driver-version-565.57.01-open.txt")),
    });
    assertEquals(g.state, "driver-failed");
    assertEquals(g.driverVersion, "565.57.01");
    assertEquals(g.kernelModule, { version: "565.57.01", open: true });
    const c = gpuChecks(g, true);
    assertEquals(c[0].status, "fail");
  });
});

Deno.test("gpuChecks(): no GPU is ok, or a warning when the bundle has GPU engines", () => {
  const none = { state: "none" as const, gpus: [], nvidiaRuntime: false, images: [] };
  assertEquals(gpuChecks(none, false)[0].status, "ok");
  assertEquals(gpuChecks(none, true)[0].status, "warn");
  const ok = { ...none, state: "ok" as const, gpus: [{ index: 0 }], cudaVersion: "12.4" };
  const c = gpuChecks(ok, true);
  assertEquals(c.map((x) => [x.id, x.status]), [["gpu", "ok"], ["gpu.runtime", "fail"]]);
});
