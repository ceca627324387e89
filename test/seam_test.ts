/**
 * The Docker seam holds: no program file (src/, tests aside) runs the docker or compose CLIs
 * except src/docker.ts, whose runner the context carries; and none reads the wall clock with
 * Date.now() (ctx.now() does). Unit tests then see every call and every wait.
 */
import { assertEquals } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function programFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(`${ROOT}${dir}`)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (p.endsWith(".ts") && !p.endsWith("_test.ts")) out.push(p);
    }
  };
  await walk("src");
  return out.sort();
}

Deno.test("the program runs docker and compose only through the seam, and reads no wall clock", async () => {
  const rules: [string, RegExp][] = [
    ["runDocker() (tests and fixtures only)", /\brunDocker\(/],
    ["a docker process of its own", /(runCommand|new Deno\.Command)\(\s*["'`]docker/],
    ["Date.now()", /\bDate\.now\(\)/],
  ];
  const offenders: string[] = [];
  const files = await programFiles();
  for (const f of files) {
    if (f === "src/docker.ts") continue;
    const text = await Deno.readTextFile(ROOT + f);
    for (const [what, re] of rules) if (re.test(text)) offenders.push(`${f}: ${what}`);
  }
  assertEquals(offenders, []);
  // The scan saw the program (a wrong root would pass on nothing).
  assertEquals(files.includes("src/steps/runner.ts") && files.includes("src/host/stack.ts"), true);
});
