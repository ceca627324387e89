/**
 * Root filesystems for test images made from what this host has installed (nothing is pulled):
 * busybox-static as /bin/sh and its applets, host binaries copied at their own paths with every
 * shared library `ldd` names, then `docker import`ed as one layer. Used by the PostgreSQL image
 * (test/support/postgres_image.ts) and the gateway stand-in (test/support/gateway_image.ts).
 */
import { dirname } from "node:path";
import { runCommand } from "../../src/docker.ts";

/** Busybox applets the images' scripts use. */
const APPLETS = [
  "sh",
  "cat",
  "chmod",
  "chown",
  "cp",
  "date",
  "echo",
  "env",
  "grep",
  "head",
  "id",
  "kill",
  "ls",
  "mkdir",
  "mktemp",
  "mv",
  "nc",
  "printf",
  "rm",
  "sed",
  "setsid",
  "sha256sum",
  "sleep",
  "su",
  "tail",
  "test",
  "tr",
  "true",
  "wc",
  "wget",
  "awk",
  "cut",
  "find",
  "httpd",
  "sort",
  "stat",
  "tee",
  "touch",
  "xargs",
  "basename",
  "dirname",
  "rmdir",
];

async function must(
  p: Promise<{ code: number; stdout: string; stderr: string }>,
  what: string,
): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A root filesystem being assembled in a temp dir. */
export class RootFs {
  private constructor(readonly dir: string) {}

  /** A new root with busybox, /tmp, /etc/passwd (root and `users`), /etc/group. */
  static async create(users: { name: string; uid: number; home: string }[] = []): Promise<RootFs> {
    const dir = await Deno.makeTempDir({ prefix: "cit-rootfs-" });
    const fs = new RootFs(dir);
    for (const d of ["bin", "etc", "tmp", "lib/x86_64-linux-gnu", "lib64", "usr/lib", "usr/bin"]) {
      await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    }
    await Deno.chmod(`${dir}/tmp`, 0o1777);
    // Debian's merged /usr: binaries name libraries under /lib or /usr/lib; both resolve here.
    await Deno.symlink("../../lib/x86_64-linux-gnu", `${dir}/usr/lib/x86_64-linux-gnu`);
    await Deno.copyFile("/bin/busybox", `${dir}/bin/busybox`);
    await Deno.chmod(`${dir}/bin/busybox`, 0o755);
    for (const a of APPLETS) await Deno.symlink("busybox", `${dir}/bin/${a}`);
    const passwd = ["root:x:0:0:root:/root:/bin/sh"];
    const group = ["root:x:0:"];
    for (const u of users) {
      passwd.push(`${u.name}:x:${u.uid}:${u.uid}:${u.name}:${u.home}:/bin/sh`);
      group.push(`${u.name}:x:${u.uid}:`);
    }
    await Deno.writeTextFile(`${dir}/etc/passwd`, passwd.join("\n") + "\n");
    await Deno.writeTextFile(`${dir}/etc/group`, group.join("\n") + "\n");
    return fs;
  }

  /** Copies a host file (following links) to the same path in the root. */
  async copy(hostPath: string, mode?: number): Promise<void> {
    const to = `${this.dir}${hostPath}`;
    await Deno.mkdir(dirname(to), { recursive: true });
    await Deno.copyFile(hostPath, to);
    if (mode !== undefined) await Deno.chmod(to, mode);
  }

  /** Copies a host directory tree (cp -a) to the same path in the root. */
  async copyTree(hostDir: string, exclude: string[] = []): Promise<void> {
    const to = `${this.dir}${hostDir}`;
    await Deno.mkdir(dirname(to), { recursive: true });
    await must(runCommand("cp", ["-a", hostDir, to]), `copying ${hostDir}`);
    for (const e of exclude) await Deno.remove(`${to}/${e}`, { recursive: true }).catch(() => {});
  }

  /** Writes a file in the root. */
  async write(path: string, content: string | Uint8Array, mode = 0o644): Promise<void> {
    const to = `${this.dir}${path}`;
    await Deno.mkdir(dirname(to), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(to, content);
    else await Deno.writeFile(to, content);
    await Deno.chmod(to, mode);
  }

  /**
   * Copies every shared library that `ldd` names for these host files (and the dynamic loader)
   * to the path ldd printed. Files with a library ldd cannot find are returned (and their
   * libraries not copied): the caller leaves them out.
   */
  async copyLibrariesOf(hostFiles: string[]): Promise<string[]> {
    const libs = new Set<string>();
    const unresolved: string[] = [];
    for (const f of hostFiles) {
      const r = await runCommand("ldd", [f]);
      if (r.code !== 0) continue; // not dynamic (scripts, static binaries)
      if (/not found/.test(r.stdout)) {
        unresolved.push(f);
        continue;
      }
      for (const line of r.stdout.split("\n")) {
        const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
        if (m) libs.add(m[1]);
      }
    }
    for (const lib of libs) {
      const to = `${this.dir}${lib}`;
      try {
        await Deno.lstat(to);
      } catch {
        await this.copy(lib);
      }
    }
    return unresolved;
  }

  /**
   * `docker import`s the root (as uid/gid 0) with Dockerfile-style `changes` and returns the
   * image ID and the wall time of the import alone.
   */
  async import(ref: string, changes: string[]): Promise<{ id: string; importMs: number }> {
    const t = performance.now();
    await must(
      runCommand("sh", [
        "-c",
        'd="$1"; shift; tar -C "$d" --numeric-owner -c . | docker import "$@"',
        "sh",
        this.dir,
        ...changes.flatMap((c) => ["--change", c]),
        "-",
        ref,
      ]),
      `docker import ${ref}`,
    );
    const importMs = performance.now() - t;
    const id = (await must(
      runCommand("docker", ["image", "inspect", "--format", "{{.Id}}", ref]),
      "docker image inspect",
    )).trim();
    return { id, importMs };
  }

  /** Removes the temp dir. */
  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Every regular file (following links) directly in a host directory. */
export async function filesIn(dir: string, suffix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(suffix)) continue;
    const st = await Deno.stat(`${dir}/${e.name}`);
    if (st.isFile) out.push(`${dir}/${e.name}`);
  }
  return out.sort();
}
