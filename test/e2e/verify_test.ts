/**
 * Journeys for `verify`: the CLI as a subprocess against bundles built by the test.
 * `verify` never touches the engine, so one bundle is built and copied per case.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { buildBundle, corrupt, runCli } from "../support/fixtures.ts";

interface VerifyJson {
  command: string;
  ok: boolean;
  files: { path: string; verdict: string; expected?: string; actual?: string }[];
  errors: string[];
}

async function copyDir(src: string): Promise<string> {
  const dst = await Deno.makeTempDir({ prefix: "cit-verify-e2e-" });
  const r = await new Deno.Command("cp", { args: ["-a", `${src}/.`, dst] }).output();
  assertEquals(r.code, 0, "cp");
  return dst;
}

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "verify journeys: a good bundle passes; each kind of damage fails with exit 4",
  ...opts,
  fn: async (t) => {
    const b = await buildBundle({ format: "script", models: { "tiny/config.json": "{}" } });
    const pg = b.images.find((i) => i.file === "postgres-16.tar")!;
    try {
      await t.step("good bundle: exit 0 and a JSON report of every file", async () => {
        const dir = await copyDir(b.dir);
        try {
          const r = await runCli(["verify", "--bundle", dir, "--json"]);
          assertEquals(r.code, 0, r.stderr);
          const j = JSON.parse(r.stdout) as VerifyJson;
          assertEquals(j.ok, true);
          const tars = j.files.filter((f) => f.path.endsWith(".tar"));
          assertEquals(
            tars.map((f) => [f.path, f.verdict]).sort(),
            b.images.map((i) => [i.file, "ok"]).sort(),
          );
          assertEquals(j.files.find((f) => f.path === pg.file)?.actual, pg.sha256);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      });

      const damages: {
        name: string;
        damage: (dir: string) => Promise<void>;
        file: string;
        verdict: string;
        re: RegExp;
      }[] = [
        {
          name: "a flipped byte",
          damage: (d) => corrupt(`${d}/${pg.file}`, { flipByteAt: Math.floor(pg.size / 2) }),
          file: pg.file,
          verdict: "mismatch",
          re: new RegExp(
            `"${pg.file}": sha256 is [0-9a-f]{12}…, checksums\\.sha256 lists ${
              pg.sha256.slice(0, 12)
            }…; re-copy`,
          ),
        },
        {
          name: "a truncated tar",
          damage: (d) => corrupt(`${d}/${pg.file}`, { truncateTo: Math.floor(pg.size / 3) }),
          file: pg.file,
          verdict: "mismatch",
          re: new RegExp(`"${pg.file}": sha256 is`),
        },
        {
          name: "1 KiB of garbage appended",
          damage: (d) => corrupt(`${d}/${pg.file}`, { appendGarbage: 1024 }),
          file: pg.file,
          verdict: "mismatch",
          re: new RegExp(`"${pg.file}": sha256 is`),
        },
        {
          name: "a listed file missing",
          damage: (d) => Deno.remove(`${d}/${pg.file}`),
          file: pg.file,
          verdict: "missing",
          re: new RegExp(`"${pg.file}".*missing`),
        },
        {
          name: "an unlisted tar",
          damage: (d) => Deno.copyFile(`${d}/${pg.file}`, `${d}/sneaky-1.tar`),
          file: "sneaky-1.tar",
          verdict: "unlisted",
          re: /"sneaky-1\.tar": no checksum or pin covers it/,
        },
      ];
      for (const c of damages) {
        await t.step(`${c.name}: exit 4, names the file`, async () => {
          const dir = await copyDir(b.dir);
          try {
            await c.damage(dir);
            const r = await runCli(["verify", "--bundle", dir, "--json"]);
            assertEquals(r.code, 4, `exit code; stderr: ${r.stderr}`);
            const j = JSON.parse(r.stdout) as VerifyJson;
            assertEquals(j.ok, false);
            assertEquals(j.files.find((f) => f.path === c.file)?.verdict, c.verdict);
            assert(j.errors.some((e) => c.re.test(e)), `errors: ${j.errors.join(" | ")}`);
            // Only the damaged file fails.
            assertEquals(j.files.filter((f) => f.verdict !== "ok").map((f) => f.path), [c.file]);
            const plain = await runCli(["verify", "--bundle", dir]);
            assertEquals(plain.code, 4);
            assertMatch(plain.stdout + plain.stderr, new RegExp(c.file.replace(".", "\\.")));
          } finally {
            await Deno.remove(dir, { recursive: true });
          }
        });
      }

      await t.step("--allow-unlisted lets an unlisted tar through (exit 0)", async () => {
        const dir = await copyDir(b.dir);
        try {
          await Deno.copyFile(`${dir}/${pg.file}`, `${dir}/sneaky-1.tar`);
          const r = await runCli(["verify", "--bundle", dir, "--json", "--allow-unlisted"]);
          assertEquals(r.code, 0, r.stderr);
          const j = JSON.parse(r.stdout) as VerifyJson;
          assertEquals(j.files.find((f) => f.path === "sneaky-1.tar")?.verdict, "unlisted");
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      });
    } finally {
      await b.cleanup();
    }
  },
});
