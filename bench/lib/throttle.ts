/**
 * slow-media: a copy of a bundle on a loop-mounted ext4 filesystem whose reads are throttled with
 * the blkio cgroup, like a USB 3 stick. cgroup v1: `blkio.throttle.read_bps_device` in a new
 * blkio group; cgroup v2: `io.max` (`rbps=`) in a new group (the io controller must be enabled
 * in the root's subtree_control). Processes join the groups through `Contender.cgroups`.
 *
 * The same groups cap memory (v1 `memory.limit_in_bytes`, v2 `memory.max`), page cache included:
 * Cortex's real bundle (~20 GB) does not stay in a host's page cache between `sha256sum` and
 * `docker load -i`, while the benchmark's 1 GiB bundle would stay in this machine's 23 GB. Under
 * the cap a second read of a file comes from the throttled device again, as it would on the host.
 */
import { sh, tryRun } from "./proc.ts";

/** A throttled copy of a bundle, or why there is none. */
export type SlowMedia =
  | { dir: string; cgroups: string[]; notes: string[]; close(): Promise<void> }
  | { skipped: string };

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes the throttled copy of `bundleDir` (`bytes` in all) read at `bps` bytes per second by
 * processes whose memory, page cache included, is capped at `memBytes`.
 */
export async function slowMedia(
  work: string,
  bundleDir: string,
  bytes: number,
  bps: number,
  memBytes: number,
): Promise<SlowMedia> {
  const img = `${work}/media.ext4`;
  const mnt = `${work}/media`;
  const tag = `cit-bench-${crypto.randomUUID().slice(0, 8)}`;
  let mounted = false;
  const cgroups: string[] = [];
  const close = async () => {
    if (mounted) await tryRun(["umount", mnt]);
    mounted = false;
    for (const g of cgroups.splice(0)) await Deno.remove(g).catch(() => {});
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
    const mib = Math.round(memBytes / 2 ** 20);
    if (await exists("/sys/fs/cgroup/blkio/cgroup.procs")) {
      const io = `/sys/fs/cgroup/blkio/${tag}`;
      await Deno.mkdir(io);
      cgroups.push(io);
      await Deno.writeTextFile(`${io}/blkio.throttle.read_bps_device`, `${majmin} ${bps}\n`);
      notes.push(`throttle: cgroup v1 blkio.throttle.read_bps_device ${majmin} ${bps} B/s`);
      if (await exists("/sys/fs/cgroup/memory/cgroup.procs")) {
        const mem = `/sys/fs/cgroup/memory/${tag}`;
        await Deno.mkdir(mem);
        cgroups.push(mem);
        await Deno.writeTextFile(`${mem}/memory.limit_in_bytes`, `${memBytes}\n`);
        notes.push(`memory: cgroup v1 memory.limit_in_bytes ${mib} MiB, page cache included`);
      } else {
        notes.push("memory: no cap (no v1 memory controller); a second read may hit the cache");
      }
    } else if (await exists("/sys/fs/cgroup/cgroup.subtree_control")) {
      const ctl = await Deno.readTextFile("/sys/fs/cgroup/cgroup.subtree_control");
      for (const c of ["io", "memory"]) {
        if (!new RegExp(`\\b${c}\\b`).test(ctl)) {
          await Deno.writeTextFile("/sys/fs/cgroup/cgroup.subtree_control", `+${c}\n`);
        }
      }
      const g = `/sys/fs/cgroup/${tag}`;
      await Deno.mkdir(g);
      cgroups.push(g);
      await Deno.writeTextFile(`${g}/io.max`, `${majmin} rbps=${bps}\n`);
      await Deno.writeTextFile(`${g}/memory.max`, `${memBytes}\n`);
      notes.push(`throttle: cgroup v2 io.max ${majmin} rbps=${bps}`);
      notes.push(`memory: cgroup v2 memory.max ${mib} MiB, page cache included`);
    } else {
      await close();
      return { skipped: "no blkio (v1) or io (v2) cgroup controller on this machine" };
    }
    return { dir: `${mnt}/bundle`, cgroups, notes, close };
  } catch (e) {
    await close();
    return { skipped: `the throttle could not be set: ${(e as Error).message}` };
  }
}
