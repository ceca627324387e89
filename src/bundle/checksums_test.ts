import assert from "node:assert/strict";
import { InstallError } from "../errors.ts";
import { normalizeBundlePath, parseChecksums } from "./checksums.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);
const UPPER = "ABCDEF0123456789".repeat(4);

Deno.test("parseChecksums() accepts sha256sum's formats", async (t) => {
  const cases: { name: string; text: string; want: [string, string][] }[] = [
    { name: "two spaces", text: `${A}  postgres-16.tar\n`, want: [["postgres-16.tar", A]] },
    { name: "binary mode ' *'", text: `${A} *redis-7.tar\n`, want: [["redis-7.tar", A]] },
    {
      name: "spaces in paths",
      text: `${A}  models/my model/config file.json\n`,
      want: [["models/my model/config file.json", A]],
    },
    {
      name: "CRLF line ends",
      text: `${A}  a.tar\r\n${B}  b.tar\r\n`,
      want: [["a.tar", A], ["b.tar", B]],
    },
    {
      name: "blank lines and no final newline",
      text: `\n${A}  a.tar\n\n   \n${B}  b.tar`,
      want: [["a.tar", A], ["b.tar", B]],
    },
    { name: "leading ./ is removed", text: `${A}  ./images/x.tar\n`, want: [["images/x.tar", A]] },
    {
      name: "upper-case hex is lower-cased",
      text: `${UPPER}  x.tar\n`,
      want: [["x.tar", UPPER.toLowerCase()]],
    },
    {
      name: "the same path twice with the same digest",
      text: `${A}  x.tar\n${A}  ./x.tar\n`,
      want: [["x.tar", A]],
    },
    {
      name: "GNU escaped name",
      text: `\\${A}  dir\\\\name\\nx.tar\n`,
      want: [["dir\\name\nx.tar", A]],
    },
    { name: "empty file", text: "", want: [] },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.deepEqual([...parseChecksums(c.text, "checksums.sha256")], c.want);
    });
  }
});

Deno.test("parseChecksums() rejects bad lines naming the file and line", async (t) => {
  const cases: { name: string; text: string; re: RegExp }[] = [
    {
      name: "malformed line 3",
      text: `${A}  a.tar\n\nnot a checksum line\n`,
      re: /^Cannot read checksums "bundle\/checksums.sha256": line 3: expected/,
    },
    { name: "short digest", text: `${"a".repeat(63)}  a.tar\n`, re: /line 1: expected/ },
    { name: "one space only", text: `${A} a.tar\n`, re: /line 1: expected/ },
    { name: "no path", text: `${A}  \n`, re: /line 1: expected/ },
    {
      name: "absolute path",
      text: `${A}  /etc/passwd\n`,
      re: /line 1: absolute path "\/etc\/passwd"/,
    },
    { name: "dot-dot segment", text: `${B}  b\n${A}  models/../../x\n`, re: /line 2: .*"\.\."/ },
    {
      name: "duplicate path with another digest",
      text: `${A}  x.tar\n${B}  x.tar\n`,
      re: /line 2: "x.tar" is listed again with sha256 bbbbbbbbbbbb…, an earlier line lists aaaa/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(
        () => parseChecksums(c.text, "bundle/checksums.sha256"),
        (e: unknown) => {
          assert.ok(e instanceof InstallError);
          assert.equal(e.exitCode, 3);
          assert.equal(e.step, "bundle");
          assert.match(e.message, c.re);
          assert.ok(e.hint);
          return true;
        },
      );
    });
  }
});

Deno.test("normalizeBundlePath() normalizes and refuses escapes", async (t) => {
  const cases: [string, string | RegExp][] = [
    ["./a//b/./c", "a/b/c"],
    ["images/x.tar", "images/x.tar"],
    ["/abs", /absolute/],
    ["C:/x", /absolute/],
    ["a/../b", /\.\./],
    ["./", /empty/],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => {
      const r = normalizeBundlePath(input);
      if (typeof want === "string") assert.deepEqual(r, { path: want });
      else assert.match("error" in r ? r.error : "", want);
    });
  }
});
