/**
 * The fuzz harness: a seeded PRNG, byte and structure mutators, and the judge. A target turns a
 * seed corpus (the real fixtures, bundles built by test/support) into cases and checks each: a
 * case passes when the parser accepts it with every property holding, or refuses it with one of
 * the project's own errors (a message, an exit code). Anything else fails: another error (a
 * TypeError, a RangeError: a stack trace for the user), a broken property, a case over the time
 * or memory bound. A failing case is saved under test/fuzz-regressions/<target>/ and replayed by
 * test/fuzz/regressions_test.ts.
 */
import { InstallError, InterruptedError, UsageError } from "../../src/errors.ts";
import { TarFormatError } from "../../src/bundle/tarindex.ts";
import { InterpolationError } from "../../src/host/compose.ts";

export const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
export const REGRESSIONS_DIR = `${REPO}/test/fuzz-regressions`;

/** The seed printed and used when none is given (fixed: a CI failure reproduces locally). */
export const DEFAULT_SEED = 20261001;
/** Wall-clock bound of one case (generous: the machine may be busy; a linear parser needs ms). */
export const CASE_TIME_BOUND_MS = 5_000;
/** Generated JSON cases larger than this are replaced by a byte mutation of the seed. */
export const MAX_CASE_BYTES = 1_000_000;
/** Resident memory bound of the fuzz process after any case. */
export const RSS_BOUND_BYTES = 2 * 1024 ** 3;

/** mulberry32: small, fast, and the same sequence on every machine for a seed. */
export class Rng {
  #s: number;
  readonly seed: number;
  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#s = this.seed;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /**
   * A child generator from this one's seed and a label (a target's own stream: adding, removing
   * or selecting targets does not shift the others).
   */
  fork(label: string): Rng {
    let h = 2166136261;
    for (const c of label) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
    return new Rng((this.seed ^ h) >>> 0);
  }
}

/** A broken property (the parser accepted input and then did something wrong). */
export class PropertyFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PropertyFailure";
  }
}

/** Asserts a property; throws PropertyFailure with `what` otherwise. */
export function prop(ok: boolean, what: string): asserts ok {
  if (!ok) throw new PropertyFailure(what);
}

/** Whether an error is one of the project's own, with a message (a refusal, not a crash). */
export function isOurs(e: unknown): boolean {
  const ours = e instanceof InstallError || e instanceof UsageError ||
    e instanceof InterruptedError || e instanceof TarFormatError ||
    e instanceof InterpolationError;
  return ours && typeof (e as Error).message === "string" && (e as Error).message.length > 0;
}

/** One fuzz target: a parser of untrusted input and the properties it must keep. */
export interface Target {
  /** Short name; regression files live under test/fuzz-regressions/<name>/. */
  name: string;
  /** The group (one file of test/fuzz/ per group). */
  group: string;
  /** What is parsed, and where. */
  parser: string;
  /** What cortex-install does with bad input (for RELIABILITY.md). */
  onBadInput: string;
  /** The properties checked beyond "no crash, within bounds". */
  property: string;
  /** Share of the count this target gets (default 1). */
  weight?: number;
  /** Builds the seed corpus once (fixtures, test/support builders). */
  setup?(): Promise<void>;
  /** Removes what setup made. */
  teardown?(): Promise<void>;
  /** One case (bytes: saved as is when it fails). */
  gen(rng: Rng): Uint8Array | Promise<Uint8Array>;
  /** Runs the parser on a case and checks the properties; our own errors are refusals. */
  check(input: Uint8Array): unknown | Promise<unknown>;
}

export type Outcome =
  | { ok: true; refused: boolean; ms: number }
  | { ok: false; why: string; ms: number };

/** Runs one case under the judge. */
export async function runCase(t: Target, input: Uint8Array): Promise<Outcome> {
  const t0 = performance.now();
  let refused = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new PropertyFailure(`no answer in ${4 * CASE_TIME_BOUND_MS} ms`)),
        4 * CASE_TIME_BOUND_MS,
      );
    });
    await Promise.race([Promise.resolve().then(() => t.check(input)), hang]);
  } catch (e) {
    if (e instanceof PropertyFailure) {
      return { ok: false, why: `property: ${e.message}`, ms: performance.now() - t0 };
    }
    if (!isOurs(e)) {
      const err = e as Error;
      const where = (err?.stack ?? "").split("\n").slice(1, 3).map((l) => l.trim()).join(" | ");
      return {
        ok: false,
        why: `not our error: ${err?.name ?? typeof e}: ${err?.message ?? String(e)} ${where}`,
        ms: performance.now() - t0,
      };
    }
    refused = true;
  } finally {
    clearTimeout(timer);
  }
  const ms = performance.now() - t0;
  if (ms > CASE_TIME_BOUND_MS) {
    return { ok: false, why: `over the time bound: ${Math.round(ms)} ms`, ms };
  }
  const rss = Deno.memoryUsage().rss;
  if (rss > RSS_BOUND_BYTES) {
    return { ok: false, why: `over the memory bound: rss ${Math.round(rss / 2 ** 20)} MiB`, ms };
  }
  return { ok: true, refused, ms };
}

/** Saves a failing case; returns its path (named by content, so a rerun does not duplicate). */
export async function saveRegression(target: string, input: Uint8Array): Promise<string> {
  const hex = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", input as Uint8Array<ArrayBuffer>)),
  )
    .map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
  const dir = `${REGRESSIONS_DIR}/${target}`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${hex}.bin`;
  await Deno.writeFile(path, input);
  return path;
}

// ---------------------------------------------------------------- mutators

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Tokens that break parsers: NUL, invalid UTF-8, CRLF, BOM, huge numbers, prototype keys... */
export const NASTY: readonly (string | Uint8Array)[] = [
  "\0",
  new Uint8Array([0xff]),
  new Uint8Array([0xc3]),
  new Uint8Array([0xed, 0xa0, 0x80]),
  "\r\n",
  "\r",
  "\uFEFF",
  "\u2028",
  "\u2029",
  "\u202e",
  "\x1b[2K",
  "99999999999999999999999",
  "-1",
  "1e308",
  "NaN",
  "0x10",
  "__proto__",
  "constructor",
  "toString",
  "${toString}",
  "${X:?boom}",
  "$$",
  "..",
  "../",
  "/etc/passwd",
  "\\",
  "'",
  '"',
  "#",
  " #",
  "=",
  "\t",
  " ",
  "\n",
];

function concat(parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const bytesOf = (x: string | Uint8Array) => typeof x === "string" ? enc.encode(x) : x;

/** A long run of one character (long lines, long whitespace: quadratic regexes show here). */
function longRun(rng: Rng): Uint8Array {
  const c = rng.pick([" ", "\t", "0", "a", "#", "$", "{", "[", "\\", "=", "-"]);
  return enc.encode(c.repeat(rng.pick([100, 5_000, 50_000, 200_000])));
}

/** One byte-level mutation of `b`. */
export function mutateBytes(rng: Rng, b: Uint8Array): Uint8Array {
  const at = b.length ? rng.int(b.length + 1) : 0;
  switch (rng.int(9)) {
    case 0: { // flip bits
      const out = b.slice();
      for (let i = 0, n = 1 + rng.int(4); i < n && out.length; i++) {
        out[rng.int(out.length)] ^= 1 << rng.int(8);
      }
      return out;
    }
    case 1: // truncate
      return b.slice(0, at);
    case 2: { // delete a range
      const end = Math.min(b.length, at + 1 + rng.int(64));
      return concat([b.slice(0, at), b.slice(end)]);
    }
    case 3: // insert a nasty token
      return concat([b.slice(0, at), bytesOf(rng.pick(NASTY)), b.slice(at)]);
    case 4: // insert a long run
      return concat([b.slice(0, at), longRun(rng), b.slice(at)]);
    case 5: { // duplicate a range
      const end = Math.min(b.length, at + 1 + rng.int(256));
      return concat([b.slice(0, end), b.slice(at, end), b.slice(end)]);
    }
    case 6: // random bytes
      return concat([
        b.slice(0, at),
        Uint8Array.from({ length: 1 + rng.int(16) }, () => rng.int(256)),
        b.slice(at),
      ]);
    case 7: // line endings to CRLF, or a BOM in front
      return rng.chance(0.5)
        ? enc.encode(dec.decode(b).replaceAll("\n", "\r\n"))
        : concat([enc.encode("\uFEFF"), b]);
    default: // replace a digit run by a huge number
      return enc.encode(
        dec.decode(b).replace(
          /\d+/,
          rng.pick(["99999999999999999999", "-1", "1e400", "0".repeat(5000) + "1"]),
        ),
      );
  }
}

/** A few byte mutations in a row. */
export function mutate(rng: Rng, b: Uint8Array, max = 3): Uint8Array {
  let out = b;
  for (let i = 0, n = 1 + rng.int(max); i < n; i++) out = mutateBytes(rng, out);
  return out;
}

/** A nasty JSON value. */
function nastyJson(rng: Rng, depth = 0): unknown {
  switch (rng.int(12)) {
    case 0:
      return null;
    case 1:
      return rng.pick([0, -1, 1e308, 2 ** 53 + 1, 1.5, -0]);
    case 2:
      return rng.pick([
        "",
        "\0",
        "a\nb",
        "\u2028",
        "x".repeat(10_000),
        "../../etc",
        "/abs",
        "sha256:" + "g".repeat(64),
      ]);
    case 3:
      return true;
    case 4:
      return depth < 3 ? [nastyJson(rng, depth + 1)] : [];
    case 5:
      return depth < 3
        ? { [rng.pick(["__proto__", "constructor", "toString", "x"])]: nastyJson(rng, depth + 1) }
        : {};
    case 6: { // deep nesting
      const n = rng.pick([50, 1000, 5000]);
      return JSON.parse("[".repeat(n) + "]".repeat(n));
    }
    case 7:
      return Array.from({ length: rng.pick([100, 10_000]) }, () => "x");
    default:
      return rng.pick(["x", 1, {}, []]);
  }
}

/** A structure-aware mutation of a JSON document (bytes when it does not parse). */
export function mutateJson(rng: Rng, b: Uint8Array): Uint8Array {
  let doc: unknown;
  try {
    doc = JSON.parse(dec.decode(b));
  } catch {
    return mutate(rng, b);
  }
  const nodes: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        nodes.push({ parent: v, key: i });
        walk(x);
      });
    } else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        nodes.push({ parent: v as Record<string, unknown>, key: k });
        walk(x);
      }
    }
  };
  walk(doc);
  if (nodes.length === 0 || rng.chance(0.05)) return enc.encode(JSON.stringify(nastyJson(rng)));
  for (let i = 0, n = 1 + rng.int(3); i < n; i++) {
    const { parent, key } = rng.pick(nodes);
    const r = rng.int(4);
    if (r === 0 && !Array.isArray(parent)) {
      delete (parent as Record<string, unknown>)[key as string];
    } else if (r === 1 && !Array.isArray(parent)) {
      Object.defineProperty(
        parent,
        rng.pick(["__proto__", "constructor", "toString", `${key}\n`]),
        {
          value: nastyJson(rng),
          enumerable: true,
          configurable: true,
          writable: true,
        },
      );
    } else if (r === 2 && Array.isArray(parent)) {
      for (let k = 0, m = rng.pick([2, 50, 2000]); k < m; k++) parent.push(parent[key as number]);
    } else (parent as Record<string | number, unknown>)[key] = nastyJson(rng);
  }
  const text = JSON.stringify(doc, null, rng.chance(0.5) ? 2 : undefined);
  // Keep cases small enough to run thousands (size caps are fuzzed by the long runs).
  if (text.length > MAX_CASE_BYTES) return mutate(rng, b);
  return rng.chance(0.3) ? mutate(rng, enc.encode(text), 1) : enc.encode(text);
}

/** A YAML alias bomb (10 levels of 10 references) spliced into a document. */
export function yamlAliasBomb(rng: Rng): string {
  const width = rng.pick([5, 10]);
  let text = `x-a: &a ["lol"${',"lol"'.repeat(width - 1)}]\n`;
  for (let i = 1; i < 10; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    text += `x-${cur}: &${cur} [${Array(width).fill(`*${prev}`).join(",")}]\n`;
  }
  return text;
}

export const utf8 = (b: Uint8Array) => dec.decode(b);
export const bytes = (s: string) => enc.encode(s);
