/**
 * Journeys for `load`: the CLI as a subprocess against the real engine, with bundles built by
 * the test under unique refs (`cit-<label>/...`), cleaned up by label in `finally`.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { buildBundle, corrupt, countLoadEvents, imageIdOf, runCli } from "../support/fixtures.ts";

interface LoadJson {
  command: string;
  ok: boolean;
  dockerLoads: number;
  images: { file: string; refs: string[]; imageId?: string; verdict: string; sha256?: string }[];
}

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "load journey: a fresh engine gets every ref; a re-run loads nothing",
  ...opts,
  fn: async () => {
    const b = await buildBundle({ format: "script" });
    try {
      for (const i of b.images) assertEquals(await imageIdOf(i.ref), undefined, "not there before");
      const t0 = Date.now() / 1000;
      const r1 = await runCli(["load", "--bundle", b.dir, "--json"]);
      const t1 = Date.now() / 1000 + 1;
      assertEquals(r1.code, 0, r1.stderr);
      const j1 = JSON.parse(r1.stdout) as LoadJson;
      assertEquals(j1.dockerLoads, b.images.length);
      assertEquals(j1.images.map((i) => i.verdict), b.images.map(() => "loaded"));
      for (const i of b.images) assertEquals(await imageIdOf(i.ref), i.imageId, i.ref);
      assertEquals(await countLoadEvents(t0, t1, b.label), b.images.length);
      // The untagged dcgm entry resolves from the tar's RepoTags.
      const dcgm = b.images.find((i) => i.file === "dcgm-exporter.tar")!;
      assertEquals(j1.images.find((i) => i.file === dcgm.file)?.refs, [dcgm.ref]);

      const t2 = Date.now() / 1000;
      const r2 = await runCli(["load", "--bundle", b.dir, "--json"]);
      const t3 = Date.now() / 1000 + 1;
      assertEquals(r2.code, 0, r2.stderr);
      const j2 = JSON.parse(r2.stdout) as LoadJson;
      assertEquals(j2.dockerLoads, 0);
      assertEquals(j2.images.map((i) => i.verdict), b.images.map(() => "present"));
      assertEquals(await countLoadEvents(t2, t3, b.label), 0);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "load journey: a tar with garbage appended fails with exit 4 and leaves nothing behind",
  ...opts,
  fn: async () => {
    const b = await buildBundle({ format: "script" });
    try {
      const pg = b.images.find((i) => i.file === "postgres-16.tar")!;
      await corrupt(`${b.dir}/${pg.file}`, { appendGarbage: 1024 });
      const r = await runCli(["load", "--bundle", b.dir, "--json"]);
      assertEquals(r.code, 4, r.stderr);
      assertMatch(r.stderr, new RegExp(`postgres-16\\.tar.*sha256 is`));
      assertEquals(await imageIdOf(pg.ref), undefined, "no tag");
      assertEquals(await imageIdOf(pg.imageId), undefined, "no image ID");
    } finally {
      await b.cleanup();
    }
  },
});

for (const layout of ["legacy", "oci"] as const) {
  Deno.test({
    name: `load journey: the ${layout} layout loads from an Admin-UI package`,
    ...opts,
    fn: async () => {
      const p = `cit-${crypto.randomUUID().slice(0, 8)}`;
      const b = await buildBundle({
        format: "admin-ui",
        layout,
        images: [`${p}/cortex-gateway:latest`, `${p}/vllm-openai:latest`],
      });
      try {
        const r = await runCli(["load", "--bundle", b.dir, "--json"]);
        assertEquals(r.code, 0, r.stderr);
        const j = JSON.parse(r.stdout) as LoadJson;
        assertEquals(j.images.map((i) => i.verdict), ["loaded", "loaded"]);
        for (const i of b.images) assertEquals(await imageIdOf(i.ref), i.imageId, i.ref);
        assert(
          j.images.every((i) => i.sha256 && /^[0-9a-f]{64}$/.test(i.sha256)),
          "digests reported",
        );
      } finally {
        await b.cleanup();
      }
    },
  });
}
