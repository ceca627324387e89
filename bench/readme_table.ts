/**
 * Regenerates the README's benchmark table from bench/results.json: replaces what lies between
 * `<!-- bench:start -->` and `<!-- bench:end -->` in README.md.
 *
 *   deno run -A bench/readme_table.ts [results.json] [README.md]
 */
import { readmeTable, type Results } from "./lib/report.ts";

const root = new URL("../", import.meta.url).pathname;
const resultsPath = Deno.args[0] ?? `${root}bench/results.json`;
const readmePath = Deno.args[1] ?? `${root}README.md`;
const res: Results = JSON.parse(await Deno.readTextFile(resultsPath));
const readme = await Deno.readTextFile(readmePath);
const start = "<!-- bench:start -->";
const end = "<!-- bench:end -->";
const i = readme.indexOf(start);
const j = readme.indexOf(end);
if (i < 0 || j < i) {
  console.error(
    `Cannot update "${readmePath}": no ${start} ... ${end} markers. Add them where the table goes.`,
  );
  Deno.exit(1);
}
const next = `${readme.slice(0, i + start.length)}\n${readmeTable(res)}\n${readme.slice(j)}`;
await Deno.writeTextFile(readmePath, next);
// As `deno fmt` wants it, so the gate's `deno fmt --check` passes after a regeneration.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", readmePath] }).output();
console.error(`updated the benchmark table in ${readmePath}`);
