import { assertEquals } from "../../test/support/assert.ts";
import { isSecretKey, redactArgs } from "./redact.ts";

Deno.test("isSecretKey() tells secrets from settings", async (t) => {
  const cases: [string, boolean][] = [
    ["INTERNAL_VLLM_API_KEY", true],
    ["HF_TOKEN", true],
    ["HUGGING_FACE_HUB_TOKEN", true],
    ["POSTGRES_PASSWORD", true],
    ["DB_PASS", true],
    ["MYSQL_ROOT_PASSWD", true],
    ["JWT_SECRET", true],
    ["GOOGLE_CREDENTIALS", true],
    ["SSH_PRIVATE", true],
    ["apiKey", true],
    ["APIKEY", true],
    ["admin-password", true],
    ["hf-token", true],
    ["GATEWAY_DEV_ALLOW_ALL_KEYS", false],
    ["VLLM_MAX_NUM_BATCHED_TOKENS", false],
    ["MAX_TOKENS", false],
    ["TOKENIZER_MODE", false],
    ["OFFLINE_MODE", false],
    ["VLLM_IMAGE", false],
    ["CORTEX_MODELS_DIR", false],
    ["BYPASS_CACHE", false],
  ];
  for (const [key, want] of cases) {
    await t.step(`${key} -> ${want}`, () => assertEquals(isSecretKey(key), want));
  }
});

Deno.test("redactArgs() hides secret values and keeps the rest", async (t) => {
  const cases: [string, string[], string[]][] = [
    ["flag=value", ["install", "--hf-token=hf_abc"], ["install", "--hf-token=***"]],
    ["flag value", ["--admin-password", "s3cr3t", "--yes"], ["--admin-password", "***", "--yes"]],
    ["flag without value", ["--api-key", "--yes"], ["--api-key", "--yes"]],
    ["KEY=VALUE", ["HF_TOKEN=hf_abc", "OFFLINE_MODE=True"], ["HF_TOKEN=***", "OFFLINE_MODE=True"]],
    ["flag with KEY=VALUE", ["--env", "INTERNAL_VLLM_API_KEY=x"], [
      "--env",
      "INTERNAL_VLLM_API_KEY=***",
    ]],
    ["flag=KEY=VALUE", ["--set=DB_PASSWORD=x"], ["--set=DB_PASSWORD=***"]],
    ["not a secret", ["GATEWAY_DEV_ALLOW_ALL_KEYS=true"], ["GATEWAY_DEV_ALLOW_ALL_KEYS=true"]],
    ["url password", ["--registry", "https://u:pw@reg:5000/x"], [
      "--registry",
      "https://u:***@reg:5000/x",
    ]],
    ["plain args", ["install", "--bundle", "/media/b", "-y"], [
      "install",
      "--bundle",
      "/media/b",
      "-y",
    ]],
    ["--no- switch", ["--no-token", "bundle"], ["--no-token", "bundle"]],
  ];
  for (const [name, input, want] of cases) {
    await t.step(name, () => assertEquals(redactArgs(input), want));
  }
  await t.step("does not change its input", () => {
    const argv = ["--hf-token", "abc"];
    redactArgs(argv);
    assertEquals(argv, ["--hf-token", "abc"]);
  });
});
