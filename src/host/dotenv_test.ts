import assert from "node:assert/strict";
import {
  APPEND_HEADER,
  envRecord,
  getEnv,
  parseEnv,
  quoteValue,
  redact,
  renderEnv,
  setEnvKeys,
} from "./dotenv.ts";

const FIXTURES = new URL("../../test/testdata/cortex-v0.1.1/", import.meta.url);
const fixture = (p: string) => Deno.readTextFileSync(new URL(p, FIXTURES));

const SYNTHETIC: Record<string, string> = {
  "empty": "",
  "crlf": "A=1\r\nB=two words # c\r\n# comment\r\n\r\nC='x y'\r\n",
  "crlf no final newline": "A=1\r\nB=2",
  "export and quotes": 'export A=1\nexport B=\'single\'\n  C = "dq \\"x\\" \\n" # tail\n',
  "inline comments": "A=value # comment\nB=val#ue\nC=  spaced   # c\n",
  "invalid lines kept": "not a pair\n=nokey\n# KEY=commented\nK=v\n",
  "mixed eol": "A=1\nB=2\r\nC=3",
  "only newline": "\n",
  "unterminated quote": 'A="open\nB=2\n',
};

Deno.test("parseEnv() then renderEnv() is byte-identical", async (t) => {
  const cases: Record<string, string> = { ...SYNTHETIC };
  for (
    const f of ["backend/.env", "backend/.env.dev", "backend/.env.example", "backend/.env.prod"]
  ) {
    cases[`fixture ${f}`] = fixture(f);
  }
  cases["fixture .env.example"] = fixture(".env.example");
  cases["fixture .env.linux"] = fixture(".env.linux");
  for (const [name, text] of Object.entries(cases)) {
    await t.step(name, () => assert.equal(renderEnv(parseEnv(text)), text));
  }
});

Deno.test("parseEnv() reads values like dotenv", async (t) => {
  const cases: [string, string, string, string | undefined][] = [
    ["double quotes removed", 'A="x y"\n', "A", "x y"],
    ["single quotes literal", "A='x \\n $y'\n", "A", "x \\n $y"],
    ["double quote escapes", 'A="a\\"b\\nc"', "A", 'a"b\nc'],
    ["inline comment stripped", "A=v   # c\n", "A", "v"],
    ["hash without space kept", "A=v#c\n", "A", "v#c"],
    ["export prefix", "export A=1\n", "A", "1"],
    ["spaces around =", "A = 1\n", "A", "1"],
    ["empty value", "A=\n", "A", ""],
    ["last assignment wins", "A=1\nA=2\n", "A", "2"],
    ["comment is not a key", "# A=1\n", "A", undefined],
    ["crlf not in value", "A=1\r\n", "A", "1"],
  ];
  for (const [name, text, key, want] of cases) {
    await t.step(name, () => assert.equal(getEnv(parseEnv(text), key), want));
  }
  await t.step("real backend/.env quoted value", () => {
    const doc = parseEnv(fixture("backend/.env"));
    assert.equal(
      getEnv(doc, "CORS_ALLOW_ORIGINS"),
      "http://localhost:3001,http://10.1.10.241:3001",
    );
    assert.equal(getEnv(doc, "ADMIN_BOOTSTRAP_ORG"), "HAF");
    assert.equal(getEnv(doc, "OTEL_EXPORTER_OTLP_ENDPOINT"), "");
    assert.equal(Object.keys(envRecord(doc)).length, 31);
  });
});

Deno.test("setEnvKeys() changes values in place", async (t) => {
  const cases: [string, string, Record<string, string>, string][] = [
    [
      "keeps export and comment",
      "export A=1 # keep\nB=2\n",
      { A: "9" },
      "export A=9 # keep\nB=2\n",
    ],
    ["keeps single quotes", "A='x'\n", { A: "y z" }, "A='y z'\n"],
    ["keeps double quotes", 'A="x" # c\n', { A: "y" }, 'A="y" # c\n'],
    ["single quote not allowed", "A='x'\n", { A: "it's" }, 'A="it\'s"\n'],
    ["quotes when needed", "A=x\n", { A: "a b" }, 'A="a b"\n'],
    ["quotes a hash", "A=x\n", { A: "a#b" }, 'A="a#b"\n'],
    ["dollar gets single quotes", "A=x\n", { A: "a$b" }, "A='a$b'\n"],
    ["keeps crlf", "A=1\r\nB=2\r\n", { A: "3" }, "A=3\r\nB=2\r\n"],
    ["every assignment", "A=1\nA=2\n", { A: "3" }, "A=3\nA=3\n"],
    ["no final newline kept", "A=1", { A: "True" }, "A=True"],
  ];
  for (const [name, input, updates, want] of cases) {
    await t.step(
      name,
      () => assert.equal(renderEnv(setEnvKeys(parseEnv(input), updates).doc), want),
    );
  }
});

Deno.test("setEnvKeys() appends missing keys after one header", async (t) => {
  await t.step("lf with final newline", () => {
    const r = setEnvKeys(parseEnv("A=1\n"), { B: "2", A: "1" });
    assert.equal(renderEnv(r.doc), `A=1\n\n${APPEND_HEADER}\nB=2\n`);
    assert.deepEqual(r.changed, [{ key: "B", new: "2" }]);
  });
  await t.step("crlf without final newline", () => {
    const r = setEnvKeys(parseEnv("A=1\r\nB=2"), { C: "3", D: "4" });
    assert.equal(renderEnv(r.doc), `A=1\r\nB=2\r\n\r\n${APPEND_HEADER}\r\nC=3\r\nD=4`);
  });
  await t.step("empty doc", () => {
    const r = setEnvKeys(parseEnv(""), { OFFLINE_MODE: "True" });
    assert.equal(renderEnv(r.doc), `${APPEND_HEADER}\nOFFLINE_MODE=True\n`);
  });
  await t.step("header written once", () => {
    const once = renderEnv(setEnvKeys(parseEnv("A=1\n"), { B: "2" }).doc);
    const twice = renderEnv(setEnvKeys(parseEnv(once), { C: "3" }).doc);
    assert.equal(twice, `A=1\n\n${APPEND_HEADER}\nB=2\nC=3\n`);
  });
  await t.step("reports old values", () => {
    const r = setEnvKeys(parseEnv("A=1\nB=x\n"), { A: "2", B: "x" });
    assert.deepEqual(r.changed, [{ key: "A", old: "1", new: "2" }]);
  });
});

Deno.test("setEnvKeys() is idempotent on the real fixtures", async (t) => {
  const updates = {
    OFFLINE_MODE: "True",
    OFFLINE_MODE_AUTO_DETECT: "False",
    CORS_ALLOW_ORIGINS: "http://localhost:3001",
    VLLM_IMAGE: "vllm/vllm-openai:v0.6.3",
    CORTEX_MODELS_DIR: "/var/cortex/models",
  };
  for (const f of ["backend/.env", "backend/.env.prod", ".env.example", ".env.linux"]) {
    await t.step(f, () => {
      const text = fixture(f);
      const first = setEnvKeys(parseEnv(text), updates);
      const out = renderEnv(first.doc);
      assert.ok(first.changed.length > 0);
      const doc = parseEnv(out);
      for (const [k, v] of Object.entries(updates)) assert.equal(getEnv(doc, k), v);
      const second = setEnvKeys(doc, updates);
      assert.deepEqual(second.changed, []);
      assert.equal(renderEnv(second.doc), out);
      // Lines that were not touched keep their bytes.
      assert.equal(out.endsWith("\n"), text.endsWith("\n"));
    });
  }
  await t.step("backend/.env keeps its quote style and other lines", () => {
    const text = fixture("backend/.env");
    const out = renderEnv(setEnvKeys(parseEnv(text), updates).doc);
    assert.ok(out.includes('\nCORS_ALLOW_ORIGINS="http://localhost:3001"\n'));
    assert.ok(out.includes("\nOFFLINE_MODE=True\n"));
    assert.ok(out.endsWith("CORTEX_MODELS_DIR=/var/cortex/models"));
    const before = text.split("\n").filter((l) => !l.startsWith("CORS_ALLOW_ORIGINS="));
    assert.equal(
      out.split("\n").slice(0, before.length + 1).filter((l) =>
        !l.startsWith("CORS_ALLOW_ORIGINS=")
      ).join("\n"),
      before.join("\n"),
    );
  });
});

Deno.test("quoteValue() and redact()", async (t) => {
  await t.step("quoteValue round-trips", () => {
    for (const v of ["", "a", "a b", "it's", 'say "hi"', "a\\b", "$X", "x#y"]) {
      assert.equal(getEnv(parseEnv(`K=${quoteValue(v)}\n`), "K"), v, v);
    }
  });
  const cases: [string, string, string][] = [
    ["INTERNAL_VLLM_API_KEY", "dev-internal-token", "***"],
    ["ADMIN_BOOTSTRAP_PASSWORD", "admin", "***"],
    ["hf_token", "x", "***"],
    ["DB_PASSWD", "x", "***"],
    ["AWS_SECRET_ACCESS", "x", "***"],
    ["PRIVATE_CERT", "x", "***"],
    ["OFFLINE_MODE", "True", "True"],
    ["VLLM_IMAGE", "vllm/vllm-openai:v0.6.3", "vllm/vllm-openai:v0.6.3"],
  ];
  for (const [k, v, want] of cases) {
    await t.step(`redact ${k}`, () => assert.equal(redact(k, v), want));
  }
});
