import assert from "node:assert/strict";
import {
  commandHelp,
  COMMANDS,
  didYouMean,
  editDistance,
  globalHelp,
  parseCommandLine,
} from "./flags.ts";
import { REPO_ROOT, runCli } from "../../test/support/fixtures.ts";
import { UsageError } from "../errors.ts";
import { VERSION } from "../version.ts";

Deno.test("README documents every command and flag that --help lists", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  for (const c of COMMANDS) {
    const start = readme.indexOf(`#### \`${c.name}\``);
    assert.ok(start >= 0, `README lacks a section for ${c.name}`);
    const next = readme.indexOf("#### ", start + 5);
    const section = readme.slice(start, next < 0 ? undefined : next);
    for (const f of c.flags) {
      assert.ok(section.includes(`\`--${f.name}`), `README's ${c.name} section lacks --${f.name}`);
      assert.ok(commandHelp(c).includes(`--${f.name}`));
    }
  }
});

Deno.test("parseCommandLine()", async (t) => {
  await t.step("no arguments runs install", () => {
    const p = parseCommandLine([]);
    assert.ok(!("global" in p));
    assert.equal(p.command.name, "install");
  });
  await t.step("flags without a command run install", () => {
    const p = parseCommandLine(["--yes", "--bundle", "/b"]);
    assert.ok(!("global" in p));
    assert.equal(p.command.name, "install");
    assert.equal(p.values.bundle, "/b");
    assert.equal(p.values.yes, true);
    assert.equal(p.values["wait-timeout"], "300");
  });
  await t.step("unknown flag is a usage error naming it", () => {
    assert.throws(() => parseCommandLine(["verify", "--bogus"]), (e) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /bogus/);
      return true;
    });
  });
  await t.step("unknown command is a usage error", () => {
    assert.throws(() => parseCommandLine(["instal"]), UsageError);
  });
  await t.step("--offline with --online is refused", () => {
    assert.throws(() => parseCommandLine(["doctor", "--offline", "--online"]), UsageError);
  });
  await t.step("a string flag without its value is refused", () => {
    assert.throws(() => parseCommandLine(["verify", "--bundle"]), UsageError);
  });
  await t.step("--version and --help", () => {
    assert.deepEqual(parseCommandLine(["--version"]), { global: "version" });
    assert.deepEqual(parseCommandLine(["--help"]), { global: "help" });
    assert.match(globalHelp(VERSION), /Exit codes:/);
  });
});

Deno.test("VERSION matches deno.json", async () => {
  const cfg = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.equal(cfg.version, VERSION);
});

/** The UsageError parseCommandLine throws for these arguments. */
function usageError(argv: string[]): UsageError {
  try {
    parseCommandLine(argv);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e;
  }
  throw new Error(`no usage error for ${JSON.stringify(argv)}`);
}

Deno.test("editDistance() counts edits, a swap of neighbours as one", () => {
  const cases: [string, string, number][] = [
    ["bundle", "bundle", 0],
    ["bundel", "bundle", 1],
    ["bndle", "bundle", 1],
    ["bunddle", "bundle", 1],
    ["bandle", "bundle", 1],
    ["", "abc", 3],
    ["verify", "doctor", 6],
  ];
  for (const [a, b, want] of cases) assert.equal(editDistance(a, b), want, `${a} ${b}`);
});

Deno.test("didYouMean() suggests only a close word", () => {
  const names = COMMANDS.map((c) => c.name);
  assert.equal(didYouMean("instal", names), "install");
  assert.equal(didYouMean("INSTALL", names), "install");
  assert.equal(didYouMean("verfiy", names), "verify");
  assert.equal(didYouMean("stauts", names), "status");
  assert.equal(didYouMean("x", names), undefined);
  assert.equal(didYouMean("upgrade", names), undefined);
  assert.equal(didYouMean("bundel", ["bundle", "json"]), "bundle");
});

Deno.test("usage errors: did you mean, repeated flags, echoes", async (t) => {
  await t.step("a mistyped command gets the closest one", () => {
    const e = usageError(["instal", "--yes"]);
    assert.match(e.message, /Unknown command "instal"/);
    assert.match(e.hint!, /Did you mean `install`\?/);
  });
  await t.step("a mistyped flag gets the closest flag of that command", () => {
    const e = usageError(["install", "--bundel", "/b"]);
    assert.match(e.message, /Unknown flag "--bundel" for "install"/);
    assert.match(e.hint!, /Did you mean --bundle\?/);
    assert.match(usageError(["doctor", "--ofline"]).hint!, /Did you mean --offline\?/);
    assert.match(usageError(["--skip-modles", "--yes"]).hint!, /Did you mean --skip-models\?/);
  });
  await t.step("a flag of another command says which", () => {
    const e = usageError(["verify", "--cortex-dir", "/c"]);
    assert.match(e.hint!, /--cortex-dir is a flag of install, plan/);
  });
  await t.step("nothing close: no suggestion", () => {
    assert.doesNotMatch(usageError(["verify", "--frobnicate"]).hint!, /Did you mean/);
  });
  await t.step("a single-value flag given twice is refused, naming it", () => {
    for (
      const argv of [
        ["verify", "--bundle", "/a", "--bundle", "/b"],
        ["verify", "--bundle=/a", "--bundle", "/a"],
        ["install", "--models-dir", "/m", "--yes", "--models-dir=/n"],
      ]
    ) {
      const e = usageError(argv);
      const name = argv.find((a, i) => i > 0 && a.startsWith("--"))!.split("=")[0];
      assert.equal(e.message, `Cannot use ${name} twice: it takes one value`);
      assert.equal(e.exitCode, 2);
    }
  });
  await t.step("a switch given twice is harmless", () => {
    const p = parseCommandLine(["verify", "--json", "--json", "--bundle", "/b"]);
    assert.ok(!("global" in p));
    assert.equal(p.values.json, true);
  });
  await t.step("errors never echo a secret flag's value", () => {
    for (
      const argv of [
        ["install", "--admin-password-file", "-hunter2"],
        ["install", "--admin-password-file", "--", "hunter2"],
        ["install", "--yes", "--", "hunter2"],
        ["install", "--admin-pasword-file", "hunter2"],
        ["install", "--admin-pasword-file=hunter2"],
        ["install", "--hf-token=hunter2"],
      ]
    ) {
      const e = usageError(argv);
      assert.doesNotMatch(`${e.message} ${e.hint}`, /hunter2/, JSON.stringify(argv));
    }
  });
  await t.step("an unexpected word is echoed when it is no secret's place", () => {
    assert.match(usageError(["verify", "extra"]).message, /Unexpected argument "extra"/);
  });
});

Deno.test("the CLI as a subprocess: exit 2 with the suggestion on stderr, nothing on stdout", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["verify", "--bundel", REPO_ROOT],
      /Unknown flag "--bundel" for "verify"[^]*Did you mean --bundle\?/,
    ],
    [["verfy", "--bundle", REPO_ROOT], /Unknown command "verfy"[^]*Did you mean `verify`\?/],
    [
      ["verify", "--bundle", "/a", "--bundle", "/b"],
      /Cannot use --bundle twice: it takes one value/,
    ],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stdout, "");
  }
});
