import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../test/support/assert.ts";
import { UsageError } from "../errors.ts";
import {
  defaultCorsOrigin,
  noPasswordError,
  parseCorsOrigins,
  passwordProblems,
  planAdmin,
  prodCheck,
  readPasswordFile,
} from "./admin.ts";

const none = () => undefined;

Deno.test("readPasswordFile(): one line, trailing newline dropped; errors name the file only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-admin-" });
  try {
    await Deno.writeTextFile(`${dir}/pw`, "correct horse battery\n", { mode: 0o600 });
    await Deno.chmod(`${dir}/pw`, 0o600);
    assertEquals(await readPasswordFile(`${dir}/pw`), { password: "correct horse battery" });
    await Deno.writeTextFile(`${dir}/crlf`, "pw-with-crlf-123\r\n");
    await Deno.chmod(`${dir}/crlf`, 0o644);
    const r = await readPasswordFile(`${dir}/crlf`);
    assertEquals(r.password, "pw-with-crlf-123");
    assertMatch(r.warning!, /can be read by other users \(mode 644\); chmod 600 it/);
    assert(!r.warning!.includes("pw-with"));
    await Deno.writeTextFile(`${dir}/two`, "line-one-secret\nline-two\n");
    const e = await assertRejects(
      () => readPasswordFile(`${dir}/two`),
      UsageError,
      /must hold one line/,
    );
    assert(!e.message.includes("line-one-secret"));
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    await assertRejects(() => readPasswordFile(`${dir}/empty`), UsageError, /must hold one line/);
    const m = await assertRejects(
      () => readPasswordFile(`${dir}/pasted-Pa55word`),
      UsageError,
      /no such file/,
    );
    assertEquals(m.exitCode, 2);
    assert(!m.message.includes("Pa55word"), "the path (maybe a pasted password) is not echoed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planAdmin(): flag, then environment, then .env, then the default", async (t) => {
  await t.step("nothing given: admin, no password (prompt or exit 2)", () => {
    const p = planAdmin({ env: none, current: {} });
    assertEquals([p.user, p.userSource, p.password, p.shownPassword], [
      "admin",
      "default",
      undefined,
      "(not given)",
    ]);
  });
  await t.step("flag and file beat the environment and .env", () => {
    const p = planAdmin({
      user: "ops",
      passwordFromFile: "from-file-password",
      env: (k) =>
        ({
          ADMIN_BOOTSTRAP_USERNAME: "envuser",
          ADMIN_BOOTSTRAP_PASSWORD: "env-password-1",
        } as Record<string, string>)[k],
      current: { ADMIN_BOOTSTRAP_USERNAME: "dotenv", ADMIN_BOOTSTRAP_PASSWORD: "dotenv-password" },
    });
    assertEquals([p.user, p.userSource, p.password, p.passwordSource], [
      "ops",
      "flag",
      "from-file-password",
      "file",
    ]);
    assertEquals(p.shownPassword, "(from --admin-password-file)");
  });
  await t.step("the environment beats .env; a re-run keeps .env's", () => {
    const env = planAdmin({
      env: (k) => (k === "ADMIN_BOOTSTRAP_PASSWORD" ? "env-password-1" : undefined),
      current: { ADMIN_BOOTSTRAP_PASSWORD: "dotenv-password" },
    });
    assertEquals([env.password, env.passwordSource], ["env-password-1", "environment"]);
    const rerun = planAdmin({
      env: none,
      current: { ADMIN_BOOTSTRAP_USERNAME: "dotenv", ADMIN_BOOTSTRAP_PASSWORD: "dotenv-password" },
    });
    assertEquals([rerun.user, rerun.password, rerun.shownPassword], [
      "dotenv",
      "dotenv-password",
      "(set)",
    ]);
  });
  await t.step("a bad name is a usage error", () => {
    assertThrows(
      () => planAdmin({ user: "two words", env: none, current: {} }),
      UsageError,
      /first admin's name/,
    );
  });
  assertMatch(noPasswordError().hint!, /--admin-password-file FILE.*ADMIN_BOOTSTRAP_PASSWORD/);
  assertEquals(noPasswordError().exitCode, 2);
});

Deno.test("passwordProblems(): prod >= 12, dev >= 8, no defaults, never the password itself", () => {
  assertEquals(passwordProblems("twelve-chars", "admin", true), []);
  assertMatch(
    passwordProblems("eleven-char", "admin", true)[0],
    /11 characters; production \(prod-check\.sh\) needs at least 12/,
  );
  assertEquals(passwordProblems("eight-ch", "admin", false), []);
  assertMatch(
    passwordProblems("Administrator", "administrator", true)[0],
    /well-known default or the user's own name/,
  );
  const p = passwordProblems("it's $ecret-password", "admin", true);
  assertMatch(p[0], /cannot be written to \.env/);
  assert(p.every((x) => !x.includes("ecret")));
});

Deno.test("parseCorsOrigins(): origins only, never *", async (t) => {
  const ok: [string, string[]][] = [
    ["https://cortex.example.com", ["https://cortex.example.com"]],
    ["http://localhost:3001, https://ui.lan/", ["http://localhost:3001", "https://ui.lan"]],
  ];
  for (const [v, want] of ok) {
    await t.step(v, () => assertEquals(parseCorsOrigins(v), { origins: want }));
  }
  const bad: [string, RegExp][] = [
    ["*", /every site/],
    ["", /no origin/],
    ["cortex.example.com", /not a URL/],
    ["ftp://x", /not http/],
    ["https://x/ui", /more than scheme/],
    ["https://user:pw@x", /more than scheme/],
  ];
  for (const [v, re] of bad) {
    await t.step(`refused ${JSON.stringify(v)}`, () => {
      const r = parseCorsOrigins(v);
      assert("error" in r);
      assertMatch(r.error, re);
    });
  }
});

Deno.test("defaultCorsOrigin(): from HOST_IP, FRONTEND_BIND and FRONTEND_PORT", () => {
  assertEquals(defaultCorsOrigin({}), "http://localhost:3001");
  assertEquals(defaultCorsOrigin({ frontendPort: "3101" }), "http://localhost:3101");
  assertEquals(defaultCorsOrigin({ hostIp: "10.1.2.3" }), "http://10.1.2.3:3001");
  assertEquals(
    defaultCorsOrigin({ frontendBind: "0.0.0.0", hostname: "gpu-01" }),
    "http://gpu-01:3001",
  );
  assertEquals(defaultCorsOrigin({ frontendBind: "192.168.1.5" }), "http://192.168.1.5:3001");
  assertEquals(defaultCorsOrigin({ hostIp: "fd00::5" }), "http://[fd00::5]:3001");
});

Deno.test("prodCheck(): prod-check.sh's rules, no secret in any message", () => {
  const values = {
    INTERNAL_VLLM_API_KEY: "short-key",
    SESSION_SECRET: "s".repeat(31),
    ADMIN_BOOTSTRAP_USERNAME: "admin",
    ADMIN_BOOTSTRAP_PASSWORD: "changeme",
    CORS_ALLOW_ORIGINS: "*",
    VLLM_IMAGE: "vllm/vllm-openai:latest",
    LLAMACPP_IMAGE: "ghcr.io/ggml-org/llama.cpp",
    POSTGRES_IMAGE: "postgres:16",
  };
  const p = prodCheck(values);
  assertEquals(p.filter((x) => x.level === "error").map((x) => x.key), [
    "INTERNAL_VLLM_API_KEY",
    "SESSION_SECRET",
    "ADMIN_BOOTSTRAP_PASSWORD",
    "ADMIN_BOOTSTRAP_PASSWORD",
    "CORS_ALLOW_ORIGINS",
    "VLLM_IMAGE",
    "LLAMACPP_IMAGE",
  ]);
  assertEquals(p.filter((x) => x.level === "warning").map((x) => x.key), ["POSTGRES_PASSWORD"]);
  const text = JSON.stringify(p);
  for (const secret of ["short-key", "sssssss", "changeme"]) assert(!text.includes(secret), secret);

  const good = prodCheck({
    INTERNAL_VLLM_API_KEY: "k".repeat(64),
    SESSION_SECRET: "s".repeat(64),
    ADMIN_BOOTSTRAP_PASSWORD: "a-long-admin-password",
    CORS_ALLOW_ORIGINS: "http://10.0.0.5:3001",
    POSTGRES_PASSWORD: "not-the-default",
  });
  // Plain http on a LAN address with the prod default SESSION_COOKIE_SECURE=true: a warning.
  assertEquals(good.map((x) => [x.key, x.level]), [["SESSION_COOKIE_SECURE", "warning"]]);
  assertEquals(
    prodCheck({
      INTERNAL_VLLM_API_KEY: "k".repeat(16),
      SESSION_SECRET: "s".repeat(32),
      ADMIN_BOOTSTRAP_PASSWORD: "a-long-admin-password",
      CORS_ALLOW_ORIGINS: "http://localhost:3001",
      POSTGRES_PASSWORD: "x",
    }),
    [],
  );
});
