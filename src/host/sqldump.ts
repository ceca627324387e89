/**
 * The pure core of a database restore: a streaming filter over a plain-format `pg_dump` file, fed
 * chunk by chunk (never the whole dump in memory), that decides what psql may see.
 *
 * - `\restrict` / `\unrestrict` lines are blanked (facts §5: Cortex strips them too; a psql older
 *   than the pg_dump that wrote them rejects them).
 * - Every other psql meta-command outside COPY data (`\!`, `\i`, `\o`, `\connect`, ...) refuses the
 *   dump: `\restrict` exists to stop a crafted dump from running meta-commands, and once it is
 *   stripped this check is what stops them. pg_dump's plain output has none besides `\.`, which
 *   ends COPY data.
 * - `pg_dump: ...` lines (stderr that Cortex's Admin-UI export may have captured into the file,
 *   facts 0.1 §1.2) are blanked; a `pg_dump: error:` line refuses the dump (it is incomplete).
 * - `ALTER ... OWNER TO ...;` lines are blanked unless `keepOwners` (like `pg_restore --no-owner`):
 *   every object then belongs to the user that restores, so a dump from an instance whose
 *   POSTGRES_USER differs still restores (Cortex's own dumps name `cortex`).
 * - The dump counts as complete only when pg_dump's closing `-- PostgreSQL database dump complete`
 *   line was seen outside COPY data: a dump cut at any point lacks it.
 *
 * Dropped lines become empty lines, so line N of what psql reads is line N of the dump (plus the
 * caller's prelude). COPY data is passed through untouched: inside it, a backslash is always
 * escaped (`\\`), so no data row can look like a meta-command, and `\.` alone ends it.
 *
 * Known limit: a line that starts with a backslash inside a multi-line string literal (a function
 * body) is taken for a meta-command and refuses the dump. Cortex's schema has none; the refusal
 * says which line.
 */

const NL = 0x0a;
const BACKSLASH = 0x5c;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The line pg_dump writes at the end of a complete plain dump. */
export const DUMP_COMPLETE_LINE = "-- PostgreSQL database dump complete";

export interface DumpFilterOptions {
  /** Keep `ALTER ... OWNER TO` statements (default false: the restoring user owns everything). */
  keepOwners?: boolean;
}

/** What the filter saw and did. */
export interface DumpFilterStats {
  /** Lines read (the last one may lack its newline). */
  lines: number;
  /** `\restrict` / `\unrestrict` lines blanked. */
  restrictLines: number;
  /** `pg_dump: ...` message lines blanked. */
  pgDumpMessages: number;
  /** `ALTER ... OWNER TO` lines blanked. */
  ownerLines: number;
  /** Rows of COPY data passed through. */
  copyRows: number;
  /** The closing line was seen (outside COPY data). */
  sawComplete: boolean;
  /** The input ended inside COPY data. */
  endedInCopy: boolean;
}

/** Why a dump is refused: the line (1-based) and what was wrong. */
export interface DumpRefusal {
  line: number;
  reason: string;
}

/**
 * A streaming filter over a plain pg_dump. `push()` returns the bytes to pass on (views into the
 * chunk where lines pass unchanged); `end()` flushes a last line without a newline. After a
 * refusal, `refusal` is set and every later call returns nothing.
 */
export class DumpFilter {
  readonly stats: DumpFilterStats = {
    lines: 0,
    restrictLines: 0,
    pgDumpMessages: 0,
    ownerLines: 0,
    copyRows: 0,
    sawComplete: false,
    endedInCopy: false,
  };
  refusal: DumpRefusal | undefined;
  private inCopy = false;
  /** Start of a line whose end has not arrived yet. */
  private carry: Uint8Array = new Uint8Array(0);

  constructor(private readonly opts: DumpFilterOptions = {}) {}

  /** Whether the input so far is a complete dump that may be committed. */
  get complete(): boolean {
    return this.stats.sawComplete && !this.inCopy && !this.refusal;
  }

  /** Feeds one chunk; returns what psql should read, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.refusal) return [];
    const out: Uint8Array[] = [];
    let start = 0;
    if (this.carry.length > 0) {
      const nl = chunk.indexOf(NL);
      if (nl < 0) {
        this.carry = concat(this.carry, chunk);
        return out;
      }
      const line = concat(this.carry, chunk.subarray(0, nl + 1));
      this.carry = new Uint8Array(0);
      const r = this.line(line);
      if (r === undefined) return out;
      out.push(r);
      start = nl + 1;
    }
    // Runs of unchanged lines are passed on as one view into the chunk.
    let runStart = start;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      if (nl < 0) break;
      const line = chunk.subarray(start, nl + 1);
      const r = this.line(line);
      if (r === undefined) {
        if (start > runStart) out.push(chunk.subarray(runStart, start));
        return out;
      }
      if (r !== line) {
        if (start > runStart) out.push(chunk.subarray(runStart, start));
        out.push(r);
        runStart = nl + 1;
      }
      start = nl + 1;
    }
    if (start > runStart) out.push(chunk.subarray(runStart, start));
    if (start < chunk.length) this.carry = chunk.slice(start);
    return out;
  }

  /** Ends the input: returns the last line (given a newline) if it had none. */
  end(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (!this.refusal && this.carry.length > 0) {
      const r = this.line(concat(this.carry, enc.encode("\n")));
      if (r) out.push(r);
    }
    this.carry = new Uint8Array(0);
    this.stats.endedInCopy = this.inCopy;
    return out;
  }

  /** One line, newline included: itself, a replacement, or undefined (refused). */
  private line(line: Uint8Array): Uint8Array | undefined {
    this.stats.lines++;
    if (this.inCopy) {
      if (isCopyEnd(line)) this.inCopy = false;
      else this.stats.copyRows++;
      return line;
    }
    const first = line[0];
    // Only lines starting with one of these bytes are looked at: `\`, `C`, `p`, `-`, `A`.
    if (first === BACKSLASH) {
      const text = dec.decode(line).trimEnd();
      const cmd = text.split(/\s/, 1)[0];
      if (cmd === "\\restrict" || cmd === "\\unrestrict") {
        this.stats.restrictLines++;
        return blank(line);
      }
      this.refusal = {
        line: this.stats.lines,
        reason: `psql meta-command ${JSON.stringify(cmd.slice(0, 20))} outside COPY data`,
      };
      return undefined;
    }
    if (first === 0x43 /* C */ && startsWith(line, "COPY ")) {
      if (/FROM stdin;\s*$/.test(dec.decode(line))) this.inCopy = true;
      return line;
    }
    if (first === 0x70 /* p */ && startsWith(line, "pg_dump: ")) {
      const text = dec.decode(line).trimEnd();
      if (/^pg_dump: error:/.test(text)) {
        this.refusal = {
          line: this.stats.lines,
          reason: `pg_dump recorded an error in the file: ${text.slice(0, 200)}`,
        };
        return undefined;
      }
      this.stats.pgDumpMessages++;
      return blank(line);
    }
    if (first === 0x2d /* - */ && startsWith(line, DUMP_COMPLETE_LINE)) {
      this.stats.sawComplete = true;
      return line;
    }
    if (first === 0x41 /* A */ && !this.opts.keepOwners && startsWith(line, "ALTER ")) {
      if (/^ALTER [A-Z ]+ .* OWNER TO .*;\s*$/.test(dec.decode(line))) {
        this.stats.ownerLines++;
        return blank(line);
      }
    }
    return line;
  }
}

function isCopyEnd(line: Uint8Array): boolean {
  // `\.` then `\n` or `\r\n`
  return line[0] === BACKSLASH && line[1] === 0x2e &&
    (line.length === 3 || (line.length === 4 && line[2] === 0x0d));
}

function startsWith(line: Uint8Array, prefix: string): boolean {
  if (line.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (line[i] !== prefix.charCodeAt(i)) return false;
  return true;
}

const NEWLINE = enc.encode("\n");

/** An empty line in place of a dropped one (keeps line numbers). */
function blank(_line: Uint8Array): Uint8Array {
  return NEWLINE;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const r = new Uint8Array(a.length + b.length);
  r.set(a, 0);
  r.set(b, a.length);
  return r;
}

/** Whether the last bytes of a dump (its tail) hold pg_dump's closing line. */
export function tailShowsComplete(tail: Uint8Array): boolean {
  return dec.decode(tail).split("\n").some((l) => l.trimEnd() === DUMP_COMPLETE_LINE);
}
