import { assertEquals } from "../../test/support/assert.ts";
import { type FlagKind, isSecretKey, redactArgsWith } from "./redact.ts";
import { redactArgs } from "../cli/flags.ts";

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
    // The parser takes what follows a flag that needs a value as that value, dash or not.
    ["secret-looking flag, then a dash value", ["--api-key", "--yes"], ["--api-key", "***"]],
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

Deno.test("redactArgs() by the CLI's flag table: every form of a secret flag's value", async (t) => {
  const F = "--admin-password-file";
  const cases: [string, string[], string[]][] = [
    ["separate value", ["install", F, "pw"], ["install", F, "***"]],
    ["= form", ["install", `${F}=pw`], ["install", `${F}=***`]],
    ["= form, empty", [`${F}=`], [`${F}=***`]],
    ["= form, value holding =", [`${F}=a=b`], [`${F}=***`]],
    ["value starting with -", [F, "-pw"], [F, "***"]],
    ["value starting with --", [F, "--pw"], [F, "***"]],
    ["value that is a flag name", [F, "--yes", "--json"], [F, "***", "--json"]],
    ["= form, value starting with -", [`${F}=-pw`], [`${F}=***`]],
    ["after -- following the flag", [F, "--", "pw", "more"], [F, "--", "***", "***"]],
    ["-- not after a secret flag keeps what follows", ["--yes", "--", "x"], ["--yes", "--", "x"]],
    ["a secret flag after --", ["--", `${F}=pw`], ["--", `${F}=***`]],
    ["a secret flag after -- (separate)", ["--", F, "pw"], ["--", F, "***"]],
    ["twice", [F, "a", F, "b"], [F, "***", F, "***"]],
    ["the last word", ["install", F], ["install", F]],
    ["a typo of it", ["--admin-pasword-file", "pw"], ["--admin-pasword-file", "***"]],
    ["a typo of it, = form", ["--admn-password-file=pw"], ["--admn-password-file=***"]],
    ["an unknown flag whose name looks secret", ["--hf-token", "-pw"], ["--hf-token", "***"]],
    ["a string flag that is not secret", ["--bundle", "-odd"], ["--bundle", "-odd"]],
    ["a boolean flag does not take the next word", ["--yes", "pw"], ["--yes", "pw"]],
    ["short boolean", ["-y", "x"], ["-y", "x"]],
    ["non-secret value with KEY=VALUE", ["--cors-origin", "HF_TOKEN=x"], [
      "--cors-origin",
      "HF_TOKEN=***",
    ]],
  ];
  for (const [name, input, want] of cases) {
    await t.step(name, () => assertEquals(redactArgs(input), want));
  }
});

Deno.test("redactArgsWith() follows the table it is given, not the flag's name", () => {
  const table: Record<string, FlagKind> = {
    "pin": { takesValue: true, secret: true },
    "password-hint": { takesValue: true, secret: false },
  };
  assertEquals(
    redactArgsWith(["--pin", "-1234", "--password-hint", "blue"], (n) => table[n]),
    ["--pin", "***", "--password-hint", "blue"],
  );
});
