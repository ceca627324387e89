/**
 * readTarIndex() on tars the real tools write: `docker save` of an image made in the engine
 * (its ID and diff IDs as docker reports them), gzip of it, and skopeo's OCI archive.
 */
import assert from "node:assert/strict";
import { readTarIndex } from "../../src/bundle/tarindex.ts";
import { gzip, sha256 } from "../support/tarbuild.ts";

async function run(cmd: string, args: string[], stdin?: Uint8Array): Promise<string> {
  const p = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = p.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const r = await p.output();
  const out = new TextDecoder().decode(r.stdout);
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
  return out.trim();
}

Deno.test({
  name: "readTarIndex() gives the image ID docker reports for a real docker save",
  async fn(t) {
    const tag = Math.random().toString(36).slice(2, 10);
    const ref = `cit-tarindex-${tag}/img:v1`;
    const dir = await Deno.makeTempDir({ prefix: "cit-tarindex-" });
    try {
      const rootfs = `${dir}/rootfs`;
      await Deno.mkdir(`${rootfs}/bin`, { recursive: true });
      await Deno.copyFile("/bin/busybox", `${rootfs}/bin/busybox`);
      await Deno.symlink("busybox", `${rootfs}/bin/sh`);
      await Deno.writeTextFile(`${rootfs}/unique`, ref);
      const tarBytes = (await new Deno.Command("tar", { args: ["-C", rootfs, "-c", "."] })
        .output()).stdout;
      await run("docker", ["import", "--change", "LABEL cit=1", "-", ref], tarBytes);
      const id = await run("docker", ["image", "inspect", "--format", "{{.Id}}", ref]);
      const diffIds = JSON.parse(
        await run("docker", ["image", "inspect", "--format", "{{json .RootFS.Layers}}", ref]),
      );
      const saved = `${dir}/img.tar`;
      await run("docker", ["save", "-o", saved, ref]);
      await t.step("docker save tar", async () => {
        const idx = await readTarIndex(saved);
        assert.equal(idx.images.length, 1);
        assert.equal(idx.images[0].imageId, id);
        assert.deepEqual(idx.images[0].repoTags, [ref]);
        assert.deepEqual(idx.images[0].diffIds, diffIds);
      });
      await t.step("gzip of the docker save tar", async () => {
        const gz = `${dir}/img.tar.gz`;
        await Deno.writeFile(gz, await gzip(await Deno.readFile(saved)));
        const idx = await readTarIndex(gz);
        assert.equal(idx.compressed, true);
        assert.equal(idx.images[0].imageId, id);
      });
      const hasSkopeo = await run("skopeo", ["--version"]).then(() => true, () => false);
      await t.step({
        name: "skopeo oci-archive (OCI layout, no manifest.json)",
        ignore: !hasSkopeo,
        fn: async () => {
          const oci = `${dir}/img-oci.tar`;
          await run("skopeo", [
            "copy",
            "--insecure-policy",
            `docker-archive:${saved}`,
            `oci-archive:${oci}:${ref}`,
          ]);
          const idx = await readTarIndex(oci);
          assert.equal(idx.layout, "oci");
          assert.equal(idx.images.length, 1);
          // skopeo rewrites the config as an OCI config: the ID is that blob's digest, and the
          // layers (diff IDs) stay those docker reports.
          const rawConfig = (await new Deno.Command("skopeo", {
            args: ["inspect", "--raw", "--config", `oci-archive:${oci}`],
          }).output()).stdout;
          assert.equal(idx.images[0].imageId, `sha256:${sha256(rawConfig)}`);
          assert.deepEqual(idx.images[0].diffIds, diffIds);
          assert.deepEqual(idx.images[0].repoTags, [ref]);
        },
      });
    } finally {
      await run("docker", ["image", "rm", "-f", ref]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
