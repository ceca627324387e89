/**
 * The Docker seam holds: no program file (src/, tests aside) runs the docker or compose CLIs
 * except src/docker.ts, whose runner the context carries; and none reads the wall clock with
 * Date.now() (ctx.now() does). Unit tests then see every call and every wait.
 */
import { assert, assertEquals } from "./support/assert.ts";

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

/**
 * What no program file may do outside src/docker.ts. A spawn whose binary is a variable
 * (`new Deno.Command(bin, ...)`) could be docker: it is refused too, unless the file is listed in
 * VARIABLE_SPAWNS with the reason why its variable is never docker.
 */
const RULES: [string, RegExp][] = [
  ["runDocker() (tests and fixtures only)", /\brunDocker\(/],
  ["a docker process of its own", /(runCommand|new\s+Deno\.Command)\(\s*["'`][^"'`]*docker/],
  ["a process whose binary is a variable", /(runCommand|new\s+Deno\.Command)\(\s*[^\s"'`]/],
  ["Date.now()", /\bDate\.now\(\)/],
];

/** Files allowed a variable binary, and the text that shows docker goes to the seam there. */
const VARIABLE_SPAWNS: Record<string, RegExp> = {
  // contextRun: `cmd === "docker"` goes to ctx.docker, anything else (df, nvidia-smi) is spawned.
  "src/doctor/mod.ts": /cmd === "docker"\s*\?\s*await ctx\.docker\.run\(/,
};

function offences(file: string, text: string): string[] {
  const out: string[] = [];
  for (const [what, re] of RULES) {
    if (!re.test(text)) continue;
    const allowed = what.startsWith("a process whose binary") && VARIABLE_SPAWNS[file]?.test(text);
    if (!allowed) out.push(`${file}: ${what}`);
  }
  return out;
}

Deno.test("the seam's rules catch each way around it", () => {
  const bad = [
    'await runDocker(["ps"])',
    'new Deno.Command("docker", { args })',
    "new Deno.Command(`/usr/bin/docker-compose`, { args })",
    'await runCommand("docker", ["ps"])',
    "const bin = 'docker'; new Deno.Command(bin, { args })",
    "new Deno.Command(\n  opts.bin ?? x, {})",
    "runCommand(cmd, args)",
    "const t = Date.now();",
  ];
  for (const text of bad) assert(offences("src/x.ts", text).length > 0, text);
  const fine = [
    'new Deno.Command("tar", { args })',
    'await runCommand("sh", ["-c", "command -v dockerd"])',
    'ctx.docker.run(["ps"])',
    "ctx.now()",
  ];
  for (const text of fine) assertEquals(offences("src/x.ts", text), [], text);
  // The allowance holds only while the file really routes docker to the seam.
  assertEquals(offences("src/doctor/mod.ts", "runCommand(cmd, args)").length, 1);
});

Deno.test("the program runs docker and compose only through the seam, and reads no wall clock", async () => {
  const offenders: string[] = [];
  const files = await programFiles();
  for (const f of files) {
    if (f === "src/docker.ts") continue;
    offenders.push(...offences(f, await Deno.readTextFile(ROOT + f)));
  }
  assertEquals(offenders, []);
  // The scan saw the program (a wrong root would pass on nothing).
  assertEquals(files.includes("src/steps/runner.ts") && files.includes("src/host/stack.ts"), true);
});
