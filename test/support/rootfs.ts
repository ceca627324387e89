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
  "base64",
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

/**
 * A root filesystem being assembled: small files written into a temp dir (the overlay) plus host
 * files and trees that are not copied but read by `tar` straight from the host at import time
 * (dereferenced, at their own paths). The overlay holds no symlinks for that reason: busybox
 * applets are hard links.
 */
export class RootFs {
  /** Host paths (relative to /) that go into the image as they are on the host. */
  private readonly host = new Set<string>();
  private readonly excludes: string[] = [];

  private constructor(readonly dir: string) {}

  /** A new root with busybox, /tmp, /etc/passwd (root and `users`), /etc/group. */
  static async create(users: { name: string; uid: number; home: string }[] = []): Promise<RootFs> {
    const dir = await Deno.makeTempDir({ prefix: "cit-rootfs-" });
    // The overlay's "." becomes the image's "/": it must be traversable by non-root users.
    await Deno.chmod(dir, 0o755);
    const fs = new RootFs(dir);
    for (const d of ["bin", "etc", "tmp", "usr/bin"]) {
      await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    }
    await Deno.chmod(`${dir}/tmp`, 0o1777);
    await Deno.copyFile("/bin/busybox", `${dir}/bin/busybox`);
    await Deno.chmod(`${dir}/bin/busybox`, 0o755);
    for (const a of APPLETS) await Deno.link(`${dir}/bin/busybox`, `${dir}/bin/${a}`);
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

  /** Includes a host file or directory tree (links followed) at the same path in the image. */
  include(hostPath: string): void {
    this.host.add(hostPath.replace(/^\/+/, ""));
  }

  /** Leaves out host paths matching a tar `--exclude` pattern (e.g. `usr/lib/x/*.so`). */
  exclude(pattern: string): void {
    this.excludes.push(pattern);
  }

  /** Writes a file in the overlay. */
  async write(path: string, content: string | Uint8Array, mode = 0o644): Promise<void> {
    const to = `${this.dir}${path}`;
    await Deno.mkdir(dirname(to), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(to, content);
    else await Deno.writeFile(to, content);
    await Deno.chmod(to, mode);
  }

  /** Creates a directory in the overlay. */
  async mkdir(path: string, mode = 0o755): Promise<void> {
    await Deno.mkdir(`${this.dir}${path}`, { recursive: true });
    await Deno.chmod(`${this.dir}${path}`, mode);
  }

  /**
   * Includes every shared library that `ldd` names for these host files (and the dynamic loader),
   * at the path ldd printed. Files with a library ldd cannot find are returned (and their
   * libraries not included): the caller leaves them out.
   */
  async includeLibrariesOf(hostFiles: string[]): Promise<string[]> {
    if (hostFiles.length === 0) return [];
    // One ldd for all files (it prints "<file>:" before each file's libraries).
    const r = await runCommand("ldd", hostFiles);
    const perFile = new Map<string, string[]>();
    let current: string[] | undefined;
    for (const line of r.stdout.split("\n")) {
      const head = line.match(/^(\/\S+):$/);
      if (head && hostFiles.includes(head[1])) {
        current = [];
        perFile.set(head[1], current);
      } else if (current) current.push(line);
    }
    if (hostFiles.length === 1 && !perFile.size) perFile.set(hostFiles[0], r.stdout.split("\n"));
    const unresolved: string[] = [];
    for (const [f, lines] of perFile) {
      if (lines.some((l) => /not found/.test(l))) {
        unresolved.push(f);
        continue;
      }
      for (const line of lines) {
        const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
        if (m) this.include(m[1]);
      }
    }
    return unresolved;
  }

  /**
   * `docker import`s overlay + host paths as one layer (owners numeric, as on the host: root) with
   * Dockerfile-style `changes`. Returns the image ID and the wall time of the import (which
   * includes reading the host files).
   */
  async import(ref: string, changes: string[]): Promise<{ id: string; importMs: number }> {
    const t = performance.now();
    await must(
      runCommand("sh", [
        "-c",
        // $EXCL and $HOSTS are word lists (no spaces in these paths); set -f: no globbing.
        'd="$1"; shift; set -f; ' +
        'tar -c -h --numeric-owner -f - $EXCL -C "$d" . -C / $HOSTS | docker import "$@"',
        "sh",
        this.dir,
        ...changes.flatMap((c) => ["--change", c]),
        "-",
        ref,
      ], {
        env: {
          EXCL: this.excludes.map((e) => `--exclude=${e}`).join(" "),
          HOSTS: [...this.host].sort().join(" "),
        },
      }),
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
