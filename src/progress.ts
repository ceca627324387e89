/**
 * One byte-weighted progress display for the whole run (hash, load, copy), with rate and ETA.
 * It never goes backwards: `advance` only adds, and totals only grow.
 * On a TTY (and without NO_COLOR) it redraws one line; otherwise it prints a plain line
 * at most every `plainIntervalMs` and at each phase change.
 */

export interface ProgressSink {
  write(text: string): void;
  isTTY: boolean;
}

export class Progress {
  #total = 0;
  #done = 0;
  #label = "";
  #start: number;
  #lastDraw = 0;
  #lastPlain = -Infinity;
  #active = false;
  /** The highest percentage shown so far: work added later never moves the bar back. */
  #shownPct = 0;

  constructor(
    private readonly sink: ProgressSink,
    private readonly now: () => number = () => performance.now(),
    private readonly plainIntervalMs = 5000,
  ) {
    this.#start = now();
  }

  /** Adds work to the total (bytes). */
  addTotal(bytes: number): void {
    this.#total += Math.max(0, bytes);
    this.#active = true;
  }

  /** Sets what is being worked on now ("verify postgres-16.tar"). */
  label(text: string): void {
    if (text !== this.#label) {
      this.#label = text;
      this.#draw(true);
    }
  }

  /** Marks bytes as done; clamps so that the shown fraction never exceeds the total. */
  advance(bytes: number): void {
    if (bytes <= 0) return;
    this.#done = Math.min(this.#total, this.#done + bytes);
    this.#draw(false);
  }

  get done(): number {
    return this.#done;
  }
  get total(): number {
    return this.#total;
  }

  /** Clears the TTY line (call before printing other lines and at the end). */
  clear(): void {
    if (this.sink.isTTY && this.#active) this.sink.write("\r\x1b[2K");
  }

  /** Finishes the display. */
  finish(): void {
    if (!this.#active) return;
    this.#draw(true);
    if (this.sink.isTTY) this.sink.write("\n");
    this.#active = false;
  }

  /** The current line, without control characters (also used by tests). */
  line(): string {
    const elapsed = (this.now() - this.#start) / 1000;
    const pct = Math.max(
      this.#shownPct,
      this.#total > 0 ? Math.floor((this.#done / this.#total) * 100) : 0,
    );
    this.#shownPct = pct;
    const rate = elapsed > 0 ? this.#done / elapsed : 0;
    const eta = rate > 0 ? (this.#total - this.#done) / rate : NaN;
    return `[${String(pct).padStart(3)}%] ${formatBytes(this.#done)}/${formatBytes(this.#total)}` +
      ` ${formatBytes(rate)}/s ETA ${formatDuration(eta)}${this.#label ? `  ${this.#label}` : ""}`;
  }

  #draw(force: boolean): void {
    if (!this.#active) return;
    const t = this.now();
    if (this.sink.isTTY) {
      if (!force && t - this.#lastDraw < 100) return;
      this.#lastDraw = t;
      this.sink.write(`\r\x1b[2K${this.line()}`);
    } else {
      if (!force && t - this.#lastPlain < this.plainIntervalMs) return;
      this.#lastPlain = t;
      this.sink.write(`${this.line()}\n`);
    }
  }
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** Seconds -> "1m05s"; NaN -> "--". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "--";
  const sec = Math.round(s);
  if (sec < 60) return `${sec}s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m${String(sec % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}
