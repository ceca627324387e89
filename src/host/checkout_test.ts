import { assertEquals } from "../../test/support/assert.ts";
import { loadReleasePolicies, selectPolicy } from "../bundle/release.ts";
import {
  checkoutVersions,
  parseScriptVersionsEnv,
  parseVersionsEnv,
  preferredEngineRefs,
  readCheckoutVersions,
} from "./checkout.ts";

const FIX = new URL("../../test/testdata/", import.meta.url).pathname;
const read = (p: string) => Deno.readTextFileSync(`${FIX}${p}`);

Deno.test("parseVersionsEnv() reads Cortex 0.2's real versions.env", () => {
  const v = parseVersionsEnv(read("cortex-v0.2.0/versions.env"));
  assertEquals(v.CORTEX_VERSION, "0.2.0");
  assertEquals(v.VLLM_IMAGE, "vllm/vllm-openai:v0.28.0");
  assertEquals(v.LLAMACPP_IMAGE, "ghcr.io/ggml-org/llama.cpp:server-cuda-b10731");
  assertEquals(v.PROMETHEUS_IMAGE, "prom/prometheus:v2.55.1");
  assertEquals(Object.keys(v).length, 12);
});

Deno.test("parseScriptVersionsEnv() reads Cortex 0.1's real scripts/versions.env", () => {
  const v = parseScriptVersionsEnv(read("cortex-v0.1.1/scripts/versions.env"));
  assertEquals(v.CORTEX_VLLM_VERSION, "latest");
  assertEquals(v.CORTEX_PROMETHEUS_VERSION, "v2.47.0");
  assertEquals(v.CORTEX_VLLM_IMAGE, "vllm/vllm-openai:latest");
  assertEquals(v.CORTEX_LLAMACPP_IMAGE, "ghcr.io/ggml-org/llama.cpp:server-cuda");
  assertEquals(v.CORTEX_VERSION, undefined);
});

Deno.test("readCheckoutVersions() on the real checkouts: 0.2 names its version, 0.1 its line", async () => {
  const v02 = await readCheckoutVersions(`${FIX}cortex-v0.2.0`);
  assertEquals([v02.version, v02.line], ["0.2.0", "0.2"]);
  assertEquals(preferredEngineRefs(v02.values), [
    "vllm/vllm-openai:v0.28.0",
    "ghcr.io/ggml-org/llama.cpp:server-cuda-b10731",
  ]);
  const v01 = await readCheckoutVersions(`${FIX}cortex-v0.1.1`);
  assertEquals([v01.version, v01.line], [undefined, "0.1"]);
  const none = await readCheckoutVersions(FIX);
  assertEquals([none.version, none.line], [undefined, undefined]);
});

Deno.test("the checkout and the bundle select the policy together", async () => {
  const p = await loadReleasePolicies();
  const c = checkoutVersions("/c", read("cortex-v0.2.0/versions.env"), undefined);
  const r = selectPolicy(p, { version: "dev", layoutLine: "0.2", source: "bundle.json" }, c);
  assertEquals([r.line, r.version, r.decidedBy], ["0.2", "0.2.0", "checkout"]);
  // Both files present: the root one (0.2) wins.
  const both = checkoutVersions(
    "/c",
    "CORTEX_VERSION=0.2.0\n",
    read("cortex-v0.1.1/scripts/versions.env"),
  );
  assertEquals(both.line, "0.2");
  // Quoted values are unwrapped; comments and junk skipped.
  assertEquals({ ...parseVersionsEnv("# x\nA=\"1\"\nB='2'\nnot a line\nexport C=3\n") }, {
    A: "1",
    B: "2",
    C: "3",
  });
});
