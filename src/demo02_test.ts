import { assert, assertEquals } from "../test/support/assert.ts";
import { parseReleasePolicies, policyForLine } from "./bundle/release.ts";
import { requiredComposeKeys } from "./host/env02.ts";
import { checkoutVersions, preferredEngineRefs } from "./host/checkout.ts";
import { DEMO02_GATEWAY_PORT, DEMO02_IMAGES, demo02Policy, demo02Ref } from "./demo02.ts";

const asset = (f: string) =>
  Deno.readTextFileSync(new URL(`../assets/demo02/${f}`, import.meta.url));

Deno.test("the 0.2 demo policy is the embedded 0.2 line under the demo namespace", async () => {
  const p = parseReleasePolicies(await demo02Policy("ns"), "demo");
  const line = policyForLine(p, "0.2")!;
  assert(line.images.every((i) => i.repository.startsWith("ns/")));
  assertEquals(line.settings.mode, "root-env");
  assertEquals(
    line.readiness.find((r) => r.service === "gateway")?.url,
    `http://127.0.0.1:${DEMO02_GATEWAY_PORT}/health`,
  );
});

Deno.test("the 0.2 demo checkout has Cortex 0.2's shape: :? keys, no env_file, its images", () => {
  const compose = asset("docker.compose.prod.yaml");
  assertEquals(requiredComposeKeys(compose), [
    "ADMIN_BOOTSTRAP_PASSWORD",
    "CORS_ALLOW_ORIGINS",
    "INTERNAL_VLLM_API_KEY",
    "SESSION_SECRET",
  ]);
  assert(!/env_file/.test(compose.replace(/^#.*$/gm, "")), "no env_file (Cortex 0.2 has none)");
  const versions = checkoutVersions("/demo", asset("versions.env"), undefined);
  assertEquals([versions.version, versions.line], ["0.2.0", "0.2"]);
  assertEquals(preferredEngineRefs(versions.values), [demo02Ref(DEMO02_IMAGES[0])]);
});
