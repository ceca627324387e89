/**
 * Regenerates the README's flag tables (one under each "#### `<command>`" heading) from the flag
 * table in src/cli/flags.ts, the one source of `--help` too. Run `deno run -A
 * scripts/readme_flags.ts && deno fmt README.md` after changing a flag; src/cli/flags_test.ts
 * checks that the README lists every flag.
 */
import { COMMANDS } from "../src/cli/flags.ts";

const path = new URL("../README.md", import.meta.url);
let readme = await Deno.readTextFile(path);
const cell = (s: string) => s.replaceAll("|", "\\|");
for (const c of COMMANDS) {
  const start = readme.indexOf(`#### \`${c.name}\``);
  if (start < 0) throw new Error(`README.md has no "#### \`${c.name}\`" section`);
  const tStart = readme.indexOf("| flag", start);
  const end = readme.indexOf("\n\n", tStart);
  const tEnd = end < 0 ? readme.length : end;
  const rows = c.flags.map((f) => {
    const name = `\`--${f.name}${f.arg ? ` ${cell(f.arg)}` : ""}\``;
    const def = f.default !== undefined ? ` (default: \`${f.default}\`)` : "";
    return `| ${name} | ${cell(f.help)}${def} |`;
  });
  const table = ["| flag | meaning |", "| --- | --- |", ...rows].join("\n");
  readme = readme.slice(0, tStart) + table + readme.slice(tEnd);
}
await Deno.writeTextFile(path, readme);
