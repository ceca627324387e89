/**
 * slow-media: a copy of a bundle on a loop-mounted ext4 filesystem whose reads are throttled with
 * the blkio cgroup, like a USB 3 stick. cgroup v1: `blkio.throttle.read_bps_device` in a new
 * blkio group; cgroup v2: `io.max` (`rbps=`) in a new group (the io controller must be enabled
 * in the root's subtree_control). Processes join the group through `Contender.cgroup`.
 */
import { sh, tryRun } from "./proc.ts";

/** A throttled copy of a bundle, or why there is none. */
export type SlowMedia =
  | { dir: string; cgroup: string; notes: string[]; close(): Promise<void> }
  | { skipped: string };

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Makes the throttled copy of `bundleDir` (`bytes` in all) at `bps` bytes per second. */
export async function slowMedia(
  work: string,
  bundleDir: string,
  bytes: number,
  bps: number,
): Promise<SlowMedia> {
  const img = `${work}/media.ext4`;
  const mnt = `${work}/media`;
  const tag = `cit-bench-${crypto.randomUUID().slice(0, 8)}`;
  let mounted = false;
  let cgroup: string | undefined;
  const close = async () => {
    if (mounted) await tryRun(["umount", mnt]);
    mounted = false;
    if (cgroup) await Deno.remove(cgroup).catch(() => {});
    await Deno.remove(img).catch(() => {});
    await Deno.remove(mnt, { recursive: true }).catch(() => {});
  };
  try {
    const size = Math.ceil(bytes * 1.1) + 64 * 1024 * 1024;
    await sh(["truncate", "-s", String(size), img]);
    await sh(["mkfs.ext4", "-q", "-F", img]);
    await Deno.mkdir(mnt, { recursive: true });
    await sh(["mount", "-o", "loop", img, mnt]);
    mounted = true;
    const dev = await sh(["findmnt", "-n", "-o", "SOURCE", mnt]);
    const name = dev.split("/").pop()!;
    const majmin = (await Deno.readTextFile(`/sys/block/${name}/dev`)).trim();
    await sh(["cp", "-r", bundleDir, `${mnt}/bundle`]);
    await sh(["sync"]);
    const notes = [`media: ${dev} (${majmin}) ext4 loop device over a file on the root disk`];
    if (await exists("/sys/fs/cgroup/blkio/cgroup.procs")) {
      cgroup = `/sys/fs/cgroup/blkio/${tag}`;
      await Deno.mkdir(cgroup);
      await Deno.writeTextFile(`${cgroup}/blkio.throttle.read_bps_device`, `${majmin} ${bps}\n`);
      notes.push(`throttle: cgroup v1 blkio.throttle.read_bps_device ${majmin} ${bps} B/s`);
    } else if (await exists("/sys/fs/cgroup/cgroup.subtree_control")) {
      const ctl = await Deno.readTextFile("/sys/fs/cgroup/cgroup.subtree_control");
      if (!/\bio\b/.test(ctl)) {
        await Deno.writeTextFile("/sys/fs/cgroup/cgroup.subtree_control", "+io\n");
      }
      cgroup = `/sys/fs/cgroup/${tag}`;
      await Deno.mkdir(cgroup);
      await Deno.writeTextFile(`${cgroup}/io.max`, `${majmin} rbps=${bps}\n`);
      notes.push(`throttle: cgroup v2 io.max ${majmin} rbps=${bps}`);
    } else {
      await close();
      return { skipped: "no blkio (v1) or io (v2) cgroup controller on this machine" };
    }
    return { dir: `${mnt}/bundle`, cgroup, notes, close };
  } catch (e) {
    await close();
    return { skipped: `the throttle could not be set: ${(e as Error).message}` };
  }
}
