import assert from "node:assert/strict";
import { commandHelp, COMMANDS, globalHelp, parseCommandLine } from "./flags.ts";
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
