/**
 * The repository stands on its own: no file of the project reaches outside it (a clone, a fork or
 * a packager's copy has no `../shared`). Documentation may name where test data came from.
 */
import { assertEquals } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function trackedFiles(): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "-co", "--exclude-standard"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean);
}

Deno.test("no project file reads the workplace folder outside the repository", async () => {
  // Built from parts so that this file does not match itself.
  const dir = "shared";
  const outside = new RegExp(`\\.\\./${dir}/|${dir}/fixtures`);
  const offenders: string[] = [];
  for (const f of await trackedFiles()) {
    if (f.endsWith(".md")) continue;
    const text = await Deno.readTextFile(ROOT + f).catch(() => "");
    if (outside.test(text)) offenders.push(f);
  }
  assertEquals(offenders, []);
});
