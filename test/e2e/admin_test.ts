/**
 * Journey: installing from a Cortex Admin-UI migration package. Its non-image files (the db
 * dump, manifests) are verified before anything is loaded, and a later full run trusts the
 * journal for files unchanged since they were hashed.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  buildBundle,
  corrupt,
  countLoadEvents,
  imageIdOf,
  randomLabel,
  runCli,
} from "../support/fixtures.ts";

const dockerOk =
  (await new Deno.Command("docker", { args: ["info"], stdout: "null", stderr: "null" })
    .output().catch(() => ({ success: false }))).success;

Deno.test({
  name: "admin-ui journey: a damaged db dump stops the run before any load; hashes are reused",
  ignore: !dockerOk,
  fn: async (t) => {
    const label = randomLabel("adm");
    const ref = `cit-${label}/postgres:16`;
    const b = await buildBundle({ format: "admin-ui", label, images: [{ ref }] });
    const root = await Deno.makeTempDir({ prefix: "cit-admin-" });
    try {
      const cortex = join(root, "Cortex");
      await Deno.mkdir(join(cortex, "backend"), { recursive: true });
      await Deno.writeTextFile(
        join(cortex, "docker.compose.prod.yaml"),
        `services:\n  gateway:\n    image: ${ref}\n    network_mode: host\n    command: ["sleep", "600"]\n`,
      );
      const args = (bundle: string, models: string) => [
        "install",
        "--bundle",
        bundle,
        "--cortex-dir",
        cortex,
        "--state-dir",
        join(root, "state"),
        "--models-dir",
        join(root, models),
        "--hf-cache-dir",
        join(root, "hf"),
        "--project-name",
        label,
        "--skip-start",
        "--compose",
        "v1",
        // The fixture's db/cortex.sql is no real dump (restores: test/e2e/db_install_test.ts).
        "--skip-db",
        "--yes",
        "--json",
      ];
      const now = () => Date.now() / 1000;

      await t.step("a flipped byte in db/cortex.sql: exit 4, nothing loaded", async () => {
        const damaged = join(root, "damaged");
        const cp = await new Deno.Command("cp", { args: ["-a", b.dir, damaged] }).output();
        assert(cp.success);
        await corrupt(join(damaged, "db/cortex.sql"), { flipByteAt: 3 });
        const t0 = now();
        const r = await runCli(args(damaged, "m0"));
        assertEquals(r.code, 4, r.stderr);
        assertMatch(r.stderr, /db\/cortex\.sql/);
        assertEquals(await countLoadEvents(t0, now() + 1, label), 0);
        assertEquals(await imageIdOf(ref), undefined);
        assertEquals(
          await Deno.stat(join(cortex, "backend/.env")).catch(() => undefined),
          undefined,
        );
      });

      await t.step("a good package installs; its files are verified", async () => {
        // Files changed in the second their hashing began are not trusted later: let it pass.
        await new Promise((r) => setTimeout(r, 1100));
        const r = await runCli(args(b.dir, "m1"));
        assertEquals(r.code, 0, r.stderr);
        const j = JSON.parse(r.stdout);
        const verdicts = Object.fromEntries(
          j.files.map((f: { path: string; verdict: string }) => [f.path, f.verdict]),
        );
        assertEquals(verdicts["db/cortex.sql"], "ok");
        assert(await imageIdOf(ref), "the image was loaded");
      });

      await t.step("a full re-run (other models dir) does not hash them again", async () => {
        const r = await runCli(args(b.dir, "m2"));
        assertEquals(r.code, 0, r.stderr);
        assertEquals(JSON.parse(r.stdout).outcome, "installed");
        const audit = (await Deno.readTextFile(join(root, "state/audit.log"))).trim().split("\n");
        const last = JSON.parse(audit.at(-1)!);
        const db = last.artifacts.find((a: { path: string }) => a.path === "db/cortex.sql");
        assertEquals(db?.verdict, "cached");
      });
    } finally {
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await b.cleanup();
      await new Deno.Command("docker", { args: ["rmi", ref] }).output().catch(() => {});
    }
  },
});
