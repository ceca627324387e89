import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import {
  type Built02,
  corrupt02,
  DEFAULT_MODEL,
  fakeBundle02,
  tarName02,
} from "../../test/support/bundle02.ts";
import { InstallError } from "../errors.ts";
import { bundleDigest, formatName, readBundle } from "./read.ts";
import { loadReleasePolicies, type ReleasePolicies } from "./release.ts";
import type { Bundle } from "./types.ts";

const POLICIES = await loadReleasePolicies();

async function withBundle(
  b: Promise<Built02>,
  fn: (b: Built02) => Promise<void>,
): Promise<void> {
  const built = await b;
  try {
    await fn(built);
  } finally {
    await built.cleanup();
  }
}

const fileOf = (b: Bundle, p: string) => b.files.find((f) => f.path === p);
const withPins = (pins: Record<string, string>): ReleasePolicies => ({
  ...POLICIES,
  lines: POLICIES.lines.map((l) => l.line === "0.2" ? { ...l, pins } : l),
});

Deno.test("readBundle(): a 0.2 script bundle maps into the shared Bundle shape", async () => {
  await withBundle(
    fakeBundle02({
      variant: "script",
      images: [
        { ref: "vllm/vllm-openai:v0.28.0", role: "engine" },
        { ref: "cortex-gateway:0.2.0", role: "program" },
        { ref: "cortex-gateway-deps:0.2.0", role: "deps" },
        { ref: "postgres:16", role: "infra" },
        { ref: "prom/node-exporter:v1.8.2", role: "infra" },
      ],
    }),
    async (built) => {
      const b = await readBundle(built.dir, POLICIES);
      assertEquals(b.format, "bundle-script");
      assertEquals(formatName(b.format), "Cortex 0.2 bundle (script)");
      assertEquals(b.line, "0.2");
      assertEquals(b.cortexVersion, "0.2.0");
      assertEquals(
        b.images.map((i) => [i.file, i.declaredRefs, i.bundleRole, i.critical, i.role]),
        [
          [
            tarName02("vllm/vllm-openai:v0.28.0"),
            ["vllm/vllm-openai:v0.28.0"],
            "engine",
            true,
            "vllm",
          ],
          [tarName02("cortex-gateway:0.2.0"), ["cortex-gateway:0.2.0"], "program", true, "gateway"],
          [
            tarName02("cortex-gateway-deps:0.2.0"),
            ["cortex-gateway-deps:0.2.0"],
            "deps",
            false,
            "gateway-deps",
          ],
          [tarName02("postgres:16"), ["postgres:16"], "infra", true, "postgres"],
          [
            tarName02("prom/node-exporter:v1.8.2"),
            ["prom/node-exporter:v1.8.2"],
            "infra",
            false,
            "node-exporter",
          ],
        ],
      );
      // The image ID is known up front and the declared ref is retagged (images.json is covered).
      for (const [i, img] of b.images.entries()) {
        assertEquals(img.imageId, built.images[i].imageId);
        assertEquals(img.tagDeclared, true);
      }
      for (const i of built.images) {
        assertEquals(fileOf(b, i.file)?.expected, { sha256: i.sha256, source: "checksums" });
        assertEquals(fileOf(b, i.file)?.kind, "image");
      }
      assertEquals(fileOf(b, "images.json")?.expected?.source, "checksums");
      assertEquals(b.uncovered, ["bundle.json", "versions.env", "wheels/"]);
      assertEquals(b.wheels, [
        "wheels/fastapi-0.115.0-py3-none-any.whl",
        "wheels/requirements.txt",
      ]);
      assertEquals(b.problems, []);
      assertEquals(b.unlisted, []);
      assertEquals(b.missing, []);
      assertEquals(b.models, []);
      assertEquals(b.warnings, []);
    },
  );
});

Deno.test("readBundle(): a 0.2 Admin-UI bundle with a model, a DB dump and cortex_version dev", async () => {
  await withBundle(
    fakeBundle02({
      variant: "admin-ui",
      cortexVersion: "dev",
      models: [DEFAULT_MODEL],
      dbDump: "-- PostgreSQL database dump\n",
    }),
    async (built) => {
      const b = await readBundle(built.dir, POLICIES);
      assertEquals(b.format, "bundle-admin-ui");
      assertEquals(formatName(b.format), "Cortex 0.2 bundle (Admin UI)");
      assertEquals(b.cortexVersion, "dev");
      assertEquals(b.line, "0.2");
      assertEquals(b.models.length, 1);
      const m = b.models[0];
      assert(m.kind === "bundle-model");
      assertEquals(m.name, "tiny-chat");
      assertEquals(m.targets, ["Tiny-Chat-1B"]);
      assertEquals(m.files.map((f) => [f.path, f.src]), [
        ["Tiny-Chat-1B/config.json", "models/tiny-chat/files/Tiny-Chat-1B/config.json"],
        ["Tiny-Chat-1B/model.safetensors", "models/tiny-chat/files/Tiny-Chat-1B/model.safetensors"],
      ]);
      assertEquals(m.files[1].bytes, "weights-0123456789".length);
      for (const src of built.modelFiles) {
        const f = fileOf(b, src)!;
        assertEquals(f.kind, "model");
        assertEquals(f.expected, { sha256: built.digests[src], source: "checksums" });
        assertEquals(f.manifestSha256, built.digests[src]);
      }
      assertEquals(fileOf(b, "db/cortex.sql")?.kind, "db");
      assertEquals(fileOf(b, "db/cortex.sql")?.expected?.source, "checksums");
      assertEquals(b.uncovered, ["bundle.json", "models/tiny-chat/manifest.json"]);
      assertEquals(b.problems, []);
      assertEquals(b.unlisted, []);
      assertEquals(b.wheels, undefined);
    },
  );
});

Deno.test("readBundle(): a bundle.json of another kind is a preflight error naming it", async () => {
  await withBundle(
    fakeBundle02({ variant: "script", corrupt: { kind: "zarf-package" } }),
    async (built) => {
      const e = await assertRejects(() => readBundle(built.dir, POLICIES), InstallError);
      assertEquals(e.exitCode, 3);
      assertMatch(
        e.message,
        /bundle\.json.*kind is "zarf-package", a Cortex bundle's is "cortex-bundle"/,
      );
    },
  );
});

Deno.test("readBundle(): images.json that its checksums line does not match is a problem", async () => {
  await withBundle(
    fakeBundle02({ variant: "script", corrupt: { imagesJson: "tampered" } }),
    async (built) => {
      const b = await readBundle(built.dir, POLICIES);
      assertEquals(b.problems?.map((p) => [p.path, p.scope, p.verdict]), [
        ["images.json", "images", "mismatch"],
      ]);
      assertMatch(
        b.problems![0].message,
        /Cannot trust "images\.json": sha256 is [0-9a-f]{12}…, checksums\.sha256 lists/,
      );
      // Nothing images.json says may act on the engine now; the tars keep their checksums lines.
      assert(b.images.every((i) => i.imageId === undefined && i.tagDeclared === undefined));
      assertEquals(fileOf(b, built.images[0].file)?.expected?.source, "checksums");
    },
  );
});

Deno.test("readBundle(): images.json and checksums.sha256 that disagree on a tar name both", async () => {
  await withBundle(
    fakeBundle02({ variant: "admin-ui", corrupt: { imagesJson: "disagree" } }),
    async (built) => {
      const b = await readBundle(built.dir, POLICIES);
      const first = JSON.parse(await Deno.readTextFile(`${built.dir}/images.json`))[0].file;
      assertEquals(b.problems?.map((p) => [p.path, p.verdict]), [[first, "conflict"]]);
      assertMatch(
        b.problems![0].message,
        new RegExp(
          `"${first}": images\\.json lists sha256 000000000000…, checksums\\.sha256 lists`,
        ),
      );
    },
  );
});

Deno.test("readBundle(): a release pin beats images.json and checksums.sha256", async () => {
  await withBundle(
    fakeBundle02({ variant: "admin-ui", corrupt: { imagesJson: "disagree" } }),
    async (built) => {
      const first = JSON.parse(await Deno.readTextFile(`${built.dir}/images.json`))[0].file;
      const pin = "a".repeat(64);
      const b = await readBundle(built.dir, withPins({ [first]: pin }));
      assertEquals(b.problems, []);
      assertEquals(fileOf(b, first)?.expected, { sha256: pin, source: "pin" });
      assert(b.warnings.some((w) => w.includes("the release pin decides")), b.warnings.join("|"));
    },
  );
});

Deno.test("readBundle(): images.json's sha256 covers a tar only while checksums covers images.json", async (t) => {
  await t.step(
    "covered images.json, tar line missing from checksums: images.json vouches",
    async () => {
      await withBundle(fakeBundle02({ variant: "script" }), async (built) => {
        const tar = built.images[0].file;
        const sums = await Deno.readTextFile(`${built.dir}/checksums.sha256`);
        await Deno.writeTextFile(
          `${built.dir}/checksums.sha256`,
          sums.split("\n").filter((l) => !l.endsWith(`  ${tar}`)).join("\n"),
        );
        const b = await readBundle(built.dir, POLICIES);
        assertEquals(fileOf(b, tar)?.expected, {
          sha256: built.images[0].sha256,
          source: "images.json",
        });
        assertEquals(b.unlisted, []);
      });
    },
  );
  await t.step("images.json not covered: its sha256 values vouch for nothing", async () => {
    await withBundle(fakeBundle02({ variant: "script" }), async (built) => {
      const tar = built.images[0].file;
      const sums = await Deno.readTextFile(`${built.dir}/checksums.sha256`);
      await Deno.writeTextFile(
        `${built.dir}/checksums.sha256`,
        sums.split("\n").filter((l) => !l.endsWith(`  ${tar}`) && !l.endsWith("  images.json"))
          .join("\n"),
      );
      const b = await readBundle(built.dir, POLICIES);
      assertEquals(fileOf(b, tar)?.expected, undefined);
      assertEquals(b.unlisted, [tar]);
      assert(b.uncovered!.includes("images.json"));
      assert(b.images.every((i) => i.imageId === undefined));
      assert(b.warnings.some((w) => /"images\.json" is not covered/.test(w)));
    });
  });
});

Deno.test("readBundle(): a tar missing from images/ is missing, its image still listed", async () => {
  await withBundle(fakeBundle02({ variant: "script" }), async (built) => {
    await corrupt02(built.dir, { dropTar: built.images[1].ref });
    const b = await readBundle(built.dir, POLICIES);
    assertEquals(b.missing, [built.images[1].file]);
    assertEquals(fileOf(b, built.images[1].file)?.size, undefined);
    assertEquals(b.images.length, 3);
  });
});

Deno.test("readBundle(): a model file listed only in its (uncovered) manifest is unlisted", async () => {
  await withBundle(
    fakeBundle02({ variant: "admin-ui", models: [DEFAULT_MODEL] }),
    async (built) => {
      const sums = await Deno.readTextFile(`${built.dir}/checksums.sha256`);
      await Deno.writeTextFile(
        `${built.dir}/checksums.sha256`,
        sums.split("\n").filter((l) => !l.includes("models/")).join("\n"),
      );
      const b = await readBundle(built.dir, POLICIES);
      assertEquals(b.unlisted, [...built.modelFiles].sort());
      // The manifest's digest is kept (checked when read) but vouches for nothing.
      assertEquals(fileOf(b, built.modelFiles[0])?.expected, undefined);
      assertEquals(
        fileOf(b, built.modelFiles[0])?.manifestSha256,
        built.digests[built.modelFiles[0]],
      );
    },
  );
});

Deno.test("readBundle(): unsafe model paths and links refuse the model", async (t) => {
  for (const bad of ["../escape/x.bin", "/etc/passwd", ".cortex-install-staging-x/a", "a\\b"]) {
    await t.step(JSON.stringify(bad), async () => {
      await withBundle(
        fakeBundle02({
          variant: "admin-ui",
          models: [DEFAULT_MODEL],
          corrupt: { unsafeModelPath: bad },
        }),
        async (built) => {
          const b = await readBundle(built.dir, POLICIES);
          assertEquals(b.models, []);
          assertEquals(b.problems?.map((p) => [p.path, p.scope, p.verdict]), [
            ["models/tiny-chat/manifest.json", "models", "unsafe"],
          ]);
          assertMatch(
            b.problems![0].message,
            /Cannot seed model "tiny-chat": manifest\.json lists an unsafe/,
          );
        },
      );
    });
  }
  await t.step("a symlink in files/", async () => {
    await withBundle(
      fakeBundle02({ variant: "admin-ui", models: [DEFAULT_MODEL] }),
      async (built) => {
        await Deno.symlink(
          "/etc/hostname",
          `${built.dir}/models/tiny-chat/files/Tiny-Chat-1B/extra`,
        );
        const b = await readBundle(built.dir, POLICIES);
        assertEquals(b.models, []);
        assertEquals(b.problems?.map((p) => [p.path, p.verdict]), [
          ["models/tiny-chat/files/Tiny-Chat-1B/extra", "unsafe"],
        ]);
      },
    );
  });
});

Deno.test("readBundle(): a model manifest with `size` instead of `bytes` names the field", async () => {
  await withBundle(
    fakeBundle02({ variant: "admin-ui", models: [DEFAULT_MODEL] }),
    async (built) => {
      const p = `${built.dir}/models/tiny-chat/manifest.json`;
      const j = JSON.parse(await Deno.readTextFile(p));
      j.files = j.files.map((f: { bytes: number }) => ({ ...f, size: f.bytes, bytes: undefined }));
      await Deno.writeTextFile(p, JSON.stringify(j));
      const e = await assertRejects(() => readBundle(built.dir, POLICIES), InstallError);
      assertEquals(e.exitCode, 3);
      assertMatch(e.message, /models\/tiny-chat\/manifest\.json": files\.0\.bytes/);
    },
  );
});

Deno.test("readBundle(): a stray tar in images/ that nothing lists is unlisted, and never loaded", async () => {
  await withBundle(fakeBundle02({ variant: "script" }), async (built) => {
    await Deno.copyFile(`${built.dir}/${built.images[0].file}`, `${built.dir}/images/sneaky.tar`);
    const b = await readBundle(built.dir, POLICIES);
    assertEquals(b.unlisted, ["images/sneaky.tar"]);
    assert(!b.images.some((i) => i.file === "images/sneaky.tar"));
  });
});

Deno.test("readBundle(): the RepoTags a tar carries need not be its ref (Cortex retags)", async () => {
  await withBundle(
    fakeBundle02({
      variant: "admin-ui",
      images: [{ ref: "registry.local/vllm:v1", role: "engine", savedAs: "vllm/vllm-openai:v1" }],
    }),
    async (built) => {
      const b = await readBundle(built.dir, POLICIES);
      assertEquals(b.images[0].declaredRefs, ["registry.local/vllm:v1"]);
      assertEquals(b.images[0].tagDeclared, true);
    },
  );
});

Deno.test("bundleDigest(): a 0.2 bundle's identity covers bundle.json and checksums.sha256", async () => {
  await withBundle(fakeBundle02({ variant: "script" }), async (built) => {
    const d1 = await bundleDigest(built.dir);
    const j = JSON.parse(await Deno.readTextFile(`${built.dir}/bundle.json`));
    j.created_at = "2026-09-11T00:00:00Z";
    await Deno.writeTextFile(`${built.dir}/bundle.json`, JSON.stringify(j));
    assert(d1 !== await bundleDigest(built.dir));
  });
});

Deno.test("readBundle(): a 0.2 bundle without images.json says so once", async (t) => {
  for (const listed of [true, false]) {
    await t.step(listed ? "listed in checksums" : "not listed", async () => {
      await withBundle(fakeBundle02({ variant: "script" }), async (built) => {
        await Deno.remove(`${built.dir}/images.json`);
        if (!listed) {
          const p = `${built.dir}/checksums.sha256`;
          const s = await Deno.readTextFile(p);
          await Deno.writeTextFile(
            p,
            s.split("\n").filter((l) => !l.endsWith("images.json")).join("\n"),
          );
        }
        const b = await readBundle(built.dir, POLICIES);
        assertEquals(b.images, []);
        assertEquals(b.problems?.map((p) => [p.path, p.verdict]), [["images.json", "missing"]]);
        assertEquals(b.missing, listed ? ["images.json"] : []);
        // The tars are still covered by checksums.sha256, but nothing says what they are.
        assertEquals(b.unlisted, []);
        assertEquals(
          b.warnings.filter((w) => /is not listed in images\.json: it is not loaded/.test(w))
            .length,
          built.images.length,
        );
      });
    });
  }
});
