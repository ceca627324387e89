import { assert, assertEquals } from "../test/support/assert.ts";
import { parseReleaseManifest } from "./bundle/release.ts";
import { demoScriptManifest, renderChecksums, tinySafetensors } from "./demo.ts";

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
