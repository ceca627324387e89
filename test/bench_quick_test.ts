/**
 * The benchmark suite keeps working: `deno task bench --quick` (every case at a small size, once,
 * on the real engine) must finish and report every case with its contenders and ratios. No
 * timing is asserted (performance is measured in bench/, never in tests); pieces that need root
 * (page-cache drops, slow-media's loop mount and throttle) are reported as skipped without it.
 */
import { assert, assertEquals } from "./support/assert.ts";
import type { Results } from "../bench/lib/report.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test({
  name: "deno task bench --quick runs every case and writes its results",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "cit-bench-quick-" });
    try {
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}bench/main.ts`, "--quick", "--out", out],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(r.stderr);
      assertEquals(r.code, 0, log.slice(-3000));
      const res: Results = JSON.parse(await Deno.readTextFile(`${out}/results.json`));
      assertEquals(res.quick, true);
      assertEquals(
        res.cases.map((c) => c.id),
        ["load", "slow-media", "shared-base", "upgrade", "rerun", "models", "hash", "memory"],
      );
      for (const c of res.cases) {
        if (c.skipped) {
          // Only slow-media may be skipped, and only for want of root or a cgroup controller.
          assertEquals(c.id, "slow-media", `${c.id}: ${c.skipped}`);
          assert(!c.skipped.startsWith("failed"), c.skipped);
          continue;
        }
        assert(c.ratios.length > 0, `${c.id} has no ratios`);
        for (const x of c.ratios) {
          assert(Number.isFinite(x.value) && x.value > 0, `${c.id}/${x.id}`);
        }
        for (const m of c.contenders) {
          assertEquals(m.samples.length, 1, `${c.id}/${m.id}`);
          assert(m.median > 0);
        }
      }
      // The memory case covers load, install and seeding.
      const mem = res.cases.find((c) => c.id === "memory")!;
      for (const what of ["load", "install", "seed"]) {
        assert(mem.ratios.some((x) => x.id.startsWith(`${what}-`)), `memory: no ${what}`);
      }
      const md = await Deno.readTextFile(`${out}/RESULTS.md`);
      assert(md.includes("## Ratios and targets"));
      const svg = await Deno.readTextFile(`${out}/ratios.svg`);
      assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
      // The suite removed every image it made.
      const left = await new Deno.Command("docker", {
        args: ["images", "-q", "--filter", "label=cit", "--format", "{{.Repository}}"],
        stdout: "piped",
      }).output();
      const repos = new TextDecoder().decode(left.stdout).split("\n");
      assertEquals(repos.filter((x) => x.startsWith("cit-bench-")), []);
    } finally {
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});
