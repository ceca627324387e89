/**
 * A lossless `.env` reader/writer (pure). Like std's dotenv `parse`/`stringify`, but it keeps
 * every byte of the file: comments, blank lines, `export KEY=...`, quote styles, inline
 * comments, CRLF or LF, and a missing final newline. `setEnvKeys` changes values in place and
 * appends missing keys once, so a re-run with the same values is byte-identical.
 */
import { isSecretKey, REDACTED } from "../state/redact.ts";
import { preflightError } from "../errors.ts";

/** The parsed `KEY=value` part of a line. */
export interface EnvEntry {
  key: string;
  /** The value as a program reads it (quotes removed, escapes of "..." applied). */
  value: string;
  /** Whether the line starts with `export `. */
  exported: boolean;
  /** The quote style of the value as written. */
  quote: "" | "'" | '"';
  /** Everything before the value text (indent, `export `, key, `=`, spaces). */
  prefix: string;
  /** Everything after the value text (closing quote, spaces, `# comment`). */
  suffix: string;
}

/** One line of the file, without its line ending. */
export interface EnvLine {
  raw: string;
  /** The line ending that followed it: "\n", "\r\n", or "" for a last line with none. */
  eol: "" | "\n" | "\r\n";
  entry?: EnvEntry;
}

/** A whole `.env` file: lines plus the newline style used for appended lines. */
export interface EnvDoc {
  lines: EnvLine[];
  /** The first line ending seen in the input ("\n" when there is none). */
  newline: "\n" | "\r\n";
}

/** One value change made by setEnvKeys. `old` is undefined when the key was added. */
export interface EnvChange {
  key: string;
  old?: string;
  new: string;
}

/** Comment line that opens the block of keys appended by cortex-install (written once). */
export const APPEND_HEADER = "# cortex-install: settings added by the installer";

// `s`: a value may span lines (a multi-line quoted value) or hold U+2028/U+2029.
const LINE_RE = /^([ \t]*)(export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)([ \t]*=[ \t]*)(.*)$/s;

/** The keys the editor writes: shell and Compose variable names. */
export const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const isSpace = (c: string) => c === " " || c === "\t" || c === "\r" || c === "\v" || c === "\f";

/** Unquoted value text: up to the first whitespace-then-`#`, trailing whitespace dropped (linear). */
function unquotedText(rest: string): string {
  let end = rest.length;
  for (let i = 1; i < rest.length; i++) {
    if (rest[i] === "#" && isSpace(rest[i - 1])) {
      end = i;
      break;
    }
  }
  while (end > 0 && isSpace(rest[end - 1])) end--;
  return rest.slice(0, end);
}

/** Parses the value part of a line into its value, quote style, raw text and suffix. */
function parseValue(rest: string): { value: string; quote: EnvEntry["quote"]; text: string } {
  const q = rest[0];
  if (q === "'") {
    const end = rest.indexOf("'", 1);
    if (end > 0) return { value: rest.slice(1, end), quote: "'", text: rest.slice(0, end + 1) };
  } else if (q === '"') {
    let i = 1;
    let value = "";
    while (i < rest.length) {
      const c = rest[i];
      if (c === "\\" && i + 1 < rest.length) {
        const n = rest[i + 1];
        value += n === "n" ? "\n" : n === "r" ? "\r" : n === "t" ? "\t" : n;
        i += 2;
        continue;
      }
      if (c === '"') return { value, quote: '"', text: rest.slice(0, i + 1) };
      value += c;
      i++;
    }
  }
  // Unquoted (or an unterminated quote, kept literally): ends at whitespace followed by `#`.
  const text = unquotedText(rest);
  return { value: text, quote: "", text };
}

function parseLine(raw: string): EnvEntry | undefined {
  const m = LINE_RE.exec(raw);
  if (!m) return undefined;
  const [, indent, exp, key, eq, rest] = m;
  const { value, quote, text } = parseValue(rest);
  const prefix = indent + (exp ?? "") + key + eq;
  return {
    key,
    value,
    exported: exp !== undefined,
    quote,
    prefix,
    suffix: rest.slice(text.length),
  };
}

/** Where a quoted value that opens at `rest[0]` closes (index of the quote), or -1. */
function closingQuote(rest: string): number {
  const q = rest[0];
  if (q === "'") return rest.indexOf("'", 1);
  for (let i = 1; i < rest.length; i++) {
    if (rest[i] === "\\") i++;
    else if (rest[i] === '"') return i;
  }
  return -1;
}

/** The opening quote of a line's value when it is not closed on that line, else undefined. */
function opensMultiline(raw: string): boolean {
  const m = LINE_RE.exec(raw);
  if (!m) return false;
  const rest = m[5];
  return (rest[0] === '"' || rest[0] === "'") && closingQuote(rest) < 0;
}

/**
 * Parses `.env` text, keeping every line so that `renderEnv(parseEnv(t)) === t`. A quoted value
 * that spans lines (Compose and python-dotenv read it whole) is one opaque line whose `raw`
 * holds the inner line breaks: its inner lines are never read as keys, so never rewritten.
 */
export function parseEnv(text: string): EnvDoc {
  const physical: { raw: string; eol: "" | "\n" | "\r\n" }[] = [];
  let newline: EnvDoc["newline"] | undefined;
  let pos = 0;
  const re = /\r?\n/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const eol = m[0] as "\n" | "\r\n";
    newline ??= eol;
    physical.push({ raw: text.slice(pos, m.index), eol });
    pos = m.index + m[0].length;
  }
  if (pos < text.length) physical.push({ raw: text.slice(pos), eol: "" });
  const lines: EnvLine[] = [];
  for (let i = 0; i < physical.length; i++) {
    let { raw, eol } = physical[i];
    if (opensMultiline(raw)) {
      // Join the following lines while the quote stays open; an unclosed quote to the end of the
      // file is no multi-line value (kept line by line, as before).
      const m = LINE_RE.exec(raw)!;
      let rest = m[5];
      let j = i + 1;
      let joined = raw;
      let closed = false;
      for (; j < physical.length; j++) {
        rest += eol + physical[j].raw;
        joined += eol + physical[j].raw;
        eol = physical[j].eol;
        if (closingQuote(rest) >= 0) {
          closed = true;
          break;
        }
      }
      if (closed) {
        lines.push({ raw: joined, eol, entry: parseLine(joined) });
        i = j;
        continue;
      }
      ({ raw, eol } = physical[i]);
    }
    lines.push({ raw, eol, entry: parseLine(raw) });
  }
  return { lines, newline: newline ?? "\n" };
}

/** Renders a doc back to text (the exact input bytes for an unchanged doc). */
export function renderEnv(doc: EnvDoc): string {
  return doc.lines.map((l) => l.raw + l.eol).join("");
}

/** The value of `key` (the last assignment wins, as in dotenv and Compose), or undefined. */
export function getEnv(doc: EnvDoc, key: string): string | undefined {
  let v: string | undefined;
  for (const l of doc.lines) if (l.entry?.key === key) v = l.entry.value;
  return v;
}

/** All keys and values of a doc (last assignment wins). */
export function envRecord(doc: EnvDoc): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (const l of doc.lines) if (l.entry) out[l.entry.key] = l.entry.value;
  return out;
}

/** Characters a bare value may hold and still read back the same in bash and Compose. */
const BARE_RE = /^[A-Za-z0-9_.,:/@%+=-]*$/;

/** Whether a value must be quoted to read back the same under `bash .` and Compose. */
export function needsQuotes(value: string): boolean {
  return !BARE_RE.test(value);
}

/** Why a value cannot be written so that `bash .`, Compose v2 and python-dotenv all read it back. */
export function unwritableValue(value: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    return "it holds a line break or a control character";
  }
  if (value.includes("'") && /[$`"\\]/.test(value)) {
    return 'it holds a single quote together with one of $ ` " \\, which no quoting keeps ' +
      "readable by both bash and docker compose";
  }
  return undefined;
}

/**
 * Writes a value so that `bash .` and Compose v2 both read it back exactly: in the given quote
 * style when the value allows it, else bare when it holds only safe characters, else "..." when it
 * holds none of `$ \` " \\` (both would interpret them), else '...' (literal in both). Throws a
 * preflight error (naming no value) for a value no quoting keeps (see `unwritableValue`).
 */
export function quoteValue(value: string, style: EnvEntry["quote"] = ""): string {
  const why = unwritableValue(value);
  if (why) {
    throw preflightError(
      "settings",
      `Cannot write a value to the .env: ${why}`,
      "Choose a value without it.",
    );
  }
  const dqOk = !/[$`"\\]/.test(value);
  const sqOk = !value.includes("'");
  if (style === "'" && sqOk) return `'${value}'`;
  if (style === '"' && dqOk) return `"${value}"`;
  if (!needsQuotes(value)) return value;
  return dqOk ? `"${value}"` : `'${value}'`;
}

/**
 * Sets keys in a doc: a present key gets its new value in place (every assignment of it, keeping
 * `export`, the quote style where the value allows it and any trailing comment); missing keys are
 * appended at the end in the given order, after the {@link APPEND_HEADER} comment (written once).
 * Returns a new doc and the changes (in-place ones first, then appended ones); setting the values a doc already has changes nothing.
 */
export function setEnvKeys(
  doc: EnvDoc,
  updates: Record<string, string>,
  opts: {
    /** How a value is written (default `quoteValue`); e.g. quoting that `bash .` also reads. */
    quote?: (value: string, style: EnvEntry["quote"]) => string;
  } = {},
): { doc: EnvDoc; changed: EnvChange[] } {
  const quote = opts.quote ?? quoteValue;
  const lines = doc.lines.map((l) => ({ ...l }));
  const changed: EnvChange[] = [];
  const nl = doc.newline;
  const missing: string[] = [];
  for (const key of Object.keys(updates)) {
    if (!ENV_KEY_RE.test(key)) {
      throw preflightError(
        "settings",
        `Cannot set ${JSON.stringify(key)} in the .env: not a variable name`,
        "Use letters, digits and _ only, not starting with a digit.",
      );
    }
    const why = unwritableValue(updates[key]);
    if (why) {
      throw preflightError(
        "settings",
        `Cannot write ${key} to the .env: ${why}`,
        `Choose a value for ${key} without it.`,
      );
    }
  }
  for (const [key, value] of Object.entries(updates)) {
    let found = false;
    let differs = false;
    for (const l of lines) {
      const e = l.entry;
      if (e?.key !== key) continue;
      found = true;
      if (e.value === value) continue;
      differs = true;
      let text = quote(value, e.quote);
      // `K= # note` reads as "# note" in Compose: an empty value before a comment is quoted.
      if (text === "" && e.suffix.trim() !== "") text = "''";
      // `K = v` and `K=   v` are assignments for Compose but not for `bash .`: the line written
      // is `K=v` (indent and `export` kept).
      const m = /^([ \t]*)(export[ \t]+)?/.exec(e.prefix)!;
      const raw = m[0] + key + "=" + text + e.suffix;
      l.raw = raw;
      l.entry = parseLine(raw);
    }
    if (!found) missing.push(key);
    else if (differs) changed.push({ key, old: getEnv(doc, key), new: value });
  }
  if (missing.length > 0) {
    const noFinalNewline = lines.length > 0 && lines[lines.length - 1].eol === "";
    if (noFinalNewline) lines[lines.length - 1].eol = nl;
    const added: EnvLine[] = [];
    const hasHeader = lines.some((l) => l.raw.trim() === APPEND_HEADER);
    if (!hasHeader) {
      const last = lines[lines.length - 1];
      if (last && last.raw.trim() !== "") added.push({ raw: "", eol: nl });
      added.push({ raw: APPEND_HEADER, eol: nl });
    }
    for (const key of missing) {
      const raw = `${key}=${quote(updates[key], "")}`;
      added.push({ raw, eol: nl, entry: parseLine(raw) });
      changed.push({ key, new: updates[key] });
    }
    if (noFinalNewline) added[added.length - 1].eol = "";
    lines.push(...added);
  }
  // What was written must read back (a quote opened earlier in the file and never closed would
  // swallow the lines we wrote): refuse rather than write a file that says something else.
  const out: EnvDoc = { lines, newline: nl };
  if (changed.length > 0) {
    const back = parseEnv(renderEnv(out));
    for (const [key, value] of Object.entries(updates)) {
      if (getEnv(back, key) !== value) {
        // The quoted value that swallowed the line we wrote.
        const i = back.lines.findIndex((l) => l.raw.includes("\n") && l.raw.includes(`${key}=`));
        // The physical line number (a multi-line value is one doc line).
        const open = i < 0 ? -1 : back.lines.slice(0, i).reduce(
          (n, l) => n + 1 + (l.raw.match(/\n/g)?.length ?? 0),
          0,
        );
        throw preflightError(
          "settings",
          `Cannot set ${key} in the .env: the file would not read back ${key} as written${
            open >= 0 ? ` (line ${open + 1} opens a quoted value that never closes)` : ""
          }`,
          "Fix the .env by hand (close the quote), then run again.",
        );
      }
    }
  }
  return { doc: out, changed };
}

export { isSecretKey };

/** The value to show for `key`: "***" for secret-looking keys, else the value itself. */
export function redact(key: string, value: string): string;
export function redact(key: string, value: string | undefined): string | undefined;
export function redact(key: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  // A blank secret hides nothing: saying so tells the operator it was empty.
  return isSecretKey(key) && value !== "" ? REDACTED : value;
}
