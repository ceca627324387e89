/**
 * Disk space for this bundle, per filesystem: the paths that will receive bytes are grouped by
 * device id (walking up to the nearest existing parent for paths not created yet), their needs
 * summed and compared with the free space plus a margin (10% + 1 GiB).
 */
import { formatBytes } from "../progress.ts";
import type { Check, Run } from "./types.ts";

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
/** What the state dir needs: the journal and the audit log. */
export const STATE_DIR_BYTES = 16 * MiB;

/** One path that will receive bytes. */
export interface DiskItem {
  /** What it is: "docker data root", "models dir", ... */
  what: string;
  path: string;
  bytes: number;
}

/** The verdict for one filesystem. */
export interface DiskNeed {
  dev: number;
  /** Mount point (from df), or the nearest existing path when df could not tell. */
  mount: string;
  items: (DiskItem & { existing: string })[];
  needBytes: number;
  /** needBytes plus the margin. */
  requiredBytes: number;
  /** Free bytes for this user, or undefined when unknown. */
  freeBytes?: number;
  ok: boolean;
}

/** The margin we keep on top of what is needed: 10% plus 1 GiB. */
export function withMargin(need: number): number {
  return need === 0 ? 0 : Math.ceil(need * 1.1) + GiB;
}

/** Parses `df -B1 --output=avail,target PATH...` (pure): one row per path asked, in order. */
export function parseDf(text: string): { avail: number; target: string }[] {
  const rows: { avail: number; target: string }[] = [];
  for (const line of text.split(/\r?\n/).slice(1)) {
    const m = line.match(/^\s*(\d+)\s+(.+?)\s*$/);
    if (m) rows.push({ avail: Number(m[1]), target: m[2] });
  }
  return rows;
}

/** The nearest existing path at or above `path` (the path itself when it exists). */
export async function nearestExisting(
  path: string,
  stat: (p: string) => Promise<{ dev: number } | undefined>,
): Promise<{ path: string; dev: number }> {
  let p = path.replace(/\/+$/, "") || "/";
  for (;;) {
    const s = await stat(p);
    if (s) return { path: p, dev: s.dev };
    if (p === "/") throw new Error(`Cannot stat "/" while looking for "${path}"`);
    p = p.slice(0, p.lastIndexOf("/")) || "/";
  }
}

/**
 * Groups items by filesystem and judges each (pure once devices and free space are known).
 * `located` gives each item's nearest existing path and device; `free` the df row by device.
 */
export function groupDisk(
  items: (DiskItem & { existing: string; dev: number })[],
  free: Map<number, { avail: number; target: string }>,
): DiskNeed[] {
  const byDev = new Map<number, DiskNeed>();
  for (const it of items) {
    let g = byDev.get(it.dev);
    if (!g) {
      const f = free.get(it.dev);
      g = {
        dev: it.dev,
        mount: f?.target ?? it.existing,
        items: [],
        needBytes: 0,
        requiredBytes: 0,
        freeBytes: f?.avail,
        ok: true,
      };
      byDev.set(it.dev, g);
    }
    g.items.push({ what: it.what, path: it.path, bytes: it.bytes, existing: it.existing });
    g.needBytes += it.bytes;
  }
  for (const g of byDev.values()) {
    g.requiredBytes = withMargin(g.needBytes);
    g.ok = g.freeBytes === undefined || g.freeBytes >= g.requiredBytes;
  }
  return [...byDev.values()].sort((a, b) => a.mount.localeCompare(b.mount));
}

export interface DiskDeps {
  run: Run;
  stat(path: string): Promise<{ dev: number } | undefined>;
}

/** Real `stat`: undefined when the path does not exist or cannot be read. */
export async function statDev(path: string): Promise<{ dev: number } | undefined> {
  try {
    const s = await Deno.stat(path);
    return { dev: s.dev ?? 0 };
  } catch {
    return undefined;
  }
}

/**
 * Measures free space for the items: one `df` call over the nearest existing paths, grouped
 * by device. Items of 0 bytes are still placed (to show which paths share a filesystem).
 */
export async function checkDisk(items: DiskItem[], deps: DiskDeps): Promise<DiskNeed[]> {
  const located = await Promise.all(items.map(async (it) => {
    const n = await nearestExisting(it.path, deps.stat);
    return { ...it, existing: n.path, dev: n.dev };
  }));
  const free = new Map<number, { avail: number; target: string }>();
  const firstByDev = new Map<number, string>();
  for (const l of located) if (!firstByDev.has(l.dev)) firstByDev.set(l.dev, l.existing);
  const devs = [...firstByDev.keys()];
  if (devs.length > 0) {
    const r = await deps.run("df", ["-B1", "--output=avail,target", ...firstByDev.values()], {
      timeoutMs: 10_000,
    });
    const rows = parseDf(r.stdout);
    if (rows.length === devs.length) devs.forEach((d, i) => free.set(d, rows[i]));
  }
  return groupDisk(located, free);
}

/** Turns filesystem verdicts into checks (pure). */
export function diskChecks(needs: DiskNeed[]): Check[] {
  return needs.map((g) => {
    const paths = g.items.map((i) =>
      `${i.what} ${i.path}${i.bytes ? ` ${formatBytes(i.bytes)}` : ""}`
    ).join(", ");
    if (g.freeBytes === undefined) {
      return {
        id: `disk.${g.mount}`,
        title: `Disk ${g.mount}`,
        status: "warn" as const,
        detail: `Cannot tell the free space of ${g.mount} (${paths}); needs ${
          formatBytes(g.requiredBytes)
        } with margin`,
        hint: "Check it by hand with `df -h`",
      };
    }
    const base =
      `needs ${formatBytes(g.needBytes)} (+ margin = ${formatBytes(g.requiredBytes)}), ` +
      `free ${formatBytes(g.freeBytes)}: ${paths}`;
    return g.ok
      ? { id: `disk.${g.mount}`, title: `Disk ${g.mount}`, status: "ok" as const, detail: base }
      : {
        id: `disk.${g.mount}`,
        title: `Disk ${g.mount}`,
        status: "fail" as const,
        detail: `Not enough space on ${g.mount}: ${base}`,
        hint: `Free ${formatBytes(g.requiredBytes - g.freeBytes)} on ${g.mount}, or point ` +
          `the models dir (--models-dir) or Docker's data root at a larger filesystem`,
      };
  });
}
