import { assertEquals } from "../../test/support/assert.ts";
import {
  hasSymlinkAncestor,
  normalizeEntryPath,
  resolveInRoot,
  stripRoot,
  symlinkStaysInside,
} from "./safepath.ts";

Deno.test("normalizeEntryPath() normalizes safe names and refuses unsafe ones", async (t) => {
  const cases: [string, string | null][] = [
    ["models/tiny/config.json", "models/tiny/config.json"],
    ["./models//tiny/", "models/tiny"],
    ["./", ""],
    ["/etc/passwd", null],
    ["../x", null],
    ["models/../../x", null],
    ["a/..", null],
    ["C:\\x", null],
    ["a\0b", null],
  ];
  for (const [input, want] of cases) {
    await t.step(JSON.stringify(input), () => {
      const r = normalizeEntryPath(input);
      assertEquals(r.ok ? r.path : null, want);
    });
  }
});

Deno.test("resolveInRoot() follows links and refuses escapes", async (t) => {
  const links = new Map([
    ["m/snap/config.json", "../blobs/abc"],
    ["m/up", ".."],
    ["m/esc", "../.."],
    ["m/abs", "/etc"],
    ["m/dot", "."],
    ["m/loop1", "loop2"],
    ["m/loop2", "loop1"],
  ]);
  const cases: [string, string | null][] = [
    ["m/snap/config.json", "m/blobs/abc"],
    ["m/up", ""],
    ["m/up/..", null],
    ["m/esc", null],
    ["m/abs", null],
    ["m/dot/x", "m/x"],
    ["m/loop1", null],
    ["..", null],
    ["a/b/../c", "a/c"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assertEquals(resolveInRoot(input, links), want));
  }
});

Deno.test("symlinkStaysInside() judges link targets from the link's folder", async (t) => {
  const none = new Map<string, string>();
  const cases: [string, string, boolean][] = [
    ["hub/m/snapshots/r1/config.json", "../../blobs/abc", true],
    ["m/a", "/etc", false],
    ["m/a", "/m/b", false],
    ["m/a", "../../etc", false],
    ["m/a", "../other/file", true],
    ["m/a", "", false],
  ];
  for (const [entry, target, want] of cases) {
    await t.step(`${entry} -> ${target}`, () => {
      assertEquals(symlinkStaysInside(entry, target, none), want);
    });
  }
  await t.step("a chain through another link is resolved", () => {
    const links = new Map([["m/a", ".."]]);
    assertEquals(symlinkStaysInside("m/b", "a/..", links), false);
    assertEquals(symlinkStaysInside("m/b", "a/..", none), true);
  });
});

Deno.test("hasSymlinkAncestor() and stripRoot()", async (t) => {
  await t.step("ancestor links are found, the entry itself is not", () => {
    const links = new Map([["m/l", "x"]]);
    assertEquals(hasSymlinkAncestor("m/l/f", links), true);
    assertEquals(hasSymlinkAncestor("m/l", links), false);
    assertEquals(hasSymlinkAncestor("m/x/f", links), false);
  });
  await t.step("stripRoot", () => {
    assertEquals(stripRoot("models/a/b", "models"), "a/b");
    assertEquals(stripRoot("models", "models"), "");
    assertEquals(stripRoot("modelsx/a", "models"), null);
    assertEquals(stripRoot("other/a", "models"), null);
  });
});
