/**
 * Fuzz targets: the `.env` editor (src/host/dotenv.ts, used for 0.1's backend/.env and root .env)
 * and the 0.2 root `.env` planner (src/host/env02.ts). Files start from Cortex's real `.env`
 * files, mutated; the keys set mix the file's own keys, new keys and invalid names; the values mix
 * the ones Cortex uses with quotes, `$`, `#`, spaces, U+2028, newlines and control characters.
 */
import { getEnv, parseEnv, renderEnv, setEnvKeys } from "../../src/host/dotenv.ts";
import { planRootEnv } from "../../src/host/env02.ts";
import { bashReadAfter } from "../support/env_oracle.ts";
import { bytes, mutate, prop, REPO, type Rng, type Target, utf8 } from "./harness.ts";

const FILES = [
  "cortex-v0.1.1/backend/.env",
  "cortex-v0.1.1/backend/.env.prod",
  "cortex-v0.1.1/.env.example",
  "cortex-v0.1.1/.env.linux",
  "cortex-v0.2.0/.env.example",
  "cortex-v0.2.0/backend/.env.example",
].map((f) => Deno.readTextFileSync(`${REPO}/test/testdata/${f}`));

const EXTRA_LINES = [
  'NOTE="first\nVLLM_IMAGE=old\nlast"\n',
  "K=x # note\n",
  "export E='quoted value' # c\n",
  "A=x" + " ".repeat(2000) + "y\n",
  "NOT A PAIR\n",
  'B="open\n',
  "C='a\u2028b'\n",
  "D=\\\\\n",
];

const VALUES = [
  "",
  "True",
  "False",
  "vllm/vllm-openai:v0.6.3",
  "/var/cortex/models",
  "http://localhost:3001,http://x:8080",
  "a b",
  'p$ss`w\\d"',
  "it's",
  "a\u2028b",
  "x#y",
  " lead",
  "trail ",
  "\ttab",
  "ü€",
  "a'b$c",
  "x\ny",
  "x\ry",
  "=",
  "--flag",
  "~",
  "*",
  "a;b",
  "$(id)",
  "${HOME}",
  "'",
  '"',
  "\\",
];

const BAD_KEYS = ["1A", "A-B", "X\nEVIL", "", "A B", "__proto__"];

function keysOf(text: string): string[] {
  const out: string[] = [];
  for (const l of parseEnv(text).lines) {
    if (l.entry && /^[A-Za-z_][A-Za-z0-9_]*$/.test(l.entry.key)) out.push(l.entry.key);
  }
  return out;
}

/** A case: `{text, updates}` as JSON. */
function genCase(rng: Rng): Uint8Array {
  let text = rng.pick(FILES);
  for (let i = 0, n = rng.int(3); i < n; i++) {
    const lines = text.split("\n");
    lines.splice(rng.int(lines.length + 1), 0, rng.pick(EXTRA_LINES).replace(/\n$/, ""));
    text = lines.join("\n");
  }
  if (rng.chance(0.5)) text = utf8(mutate(rng, bytes(text), 3));
  const own = keysOf(text);
  const updates: Record<string, string> = {};
  for (let i = 0, n = 1 + rng.int(4); i < n; i++) {
    const key = rng.chance(0.05)
      ? rng.pick(BAD_KEYS)
      : own.length && rng.chance(0.6)
      ? rng.pick(own)
      : rng.pick(["OFFLINE_MODE", "VLLM_IMAGE", "NEW_KEY", "K", "NOTE", "CORTEX_MODELS_DIR"]);
    updates[key] = rng.pick(VALUES);
  }
  return bytes(JSON.stringify({ text, updates }));
}

/** The editor's promises for a before/after pair. */
async function checkWrite(
  before: string,
  after: string,
  updates: Record<string, string>,
  again: (text: string) => { after: string; changed: number },
  allowCommented = false,
) {
  const doc = parseEnv(after);
  prop(renderEnv(parseEnv(before)) === before, "parse/render does not keep the bytes");
  for (const [k, v] of Object.entries(updates)) {
    prop(
      getEnv(doc, k) === v,
      `${k} reads back ${JSON.stringify(getEnv(doc, k))}, set ${JSON.stringify(v)}`,
    );
  }
  // Every other line keeps its bytes (lines are compared in order; appended lines come last).
  const b = parseEnv(before).lines;
  const a = doc.lines;
  prop(a.length >= b.length, "lines were dropped");
  for (let i = 0; i < b.length; i++) {
    const key = b[i].entry?.key;
    if (key !== undefined && Object.hasOwn(updates, key)) continue;
    // 0.2: a commented `#KEY=` line of a key being set is where Cortex's own script puts it.
    const commented = /^\s*#\s*([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(b[i].raw)?.[1];
    if (allowCommented && commented && Object.hasOwn(updates, commented)) continue;
    prop(
      a[i].raw === b[i].raw,
      `line ${i + 1} changed: ${JSON.stringify(b[i].raw)} -> ${JSON.stringify(a[i].raw)}`,
    );
  }
  const second = again(after);
  prop(second.changed === 0 && second.after === after, "a second run changes the file");
  // bash: only for LF files (bash keeps a CR in every value of a CRLF file) that bash can parse
  // before and after.
  const keys = Object.keys(updates);
  const got = before.includes("\r") ? undefined : await bashReadAfter(before, after, keys);
  if (got) {
    keys.forEach((k, i) =>
      prop(
        got[i] === updates[k],
        `bash reads ${k} as ${JSON.stringify(got[i])}, set ${JSON.stringify(updates[k])}`,
      )
    );
  }
}

export const ENV_TARGETS: Target[] = [
  {
    name: "dotenv-editor",
    group: "settings files",
    parser: "parseEnv / setEnvKeys (src/host/dotenv.ts): backend/.env and the root .env",
    onBadInput:
      "lines it cannot read are kept byte for byte; a key that is not a variable name, or " +
      "a value no quoting keeps readable by bash and Compose (newline, control character, `'` with " +
      "`$`), is a preflight error (exit 3) naming the key, never the value",
    property:
      "every key set reads back exactly (our Compose-rules reader, and `bash .` when bash " +
      "parses the file); every other line keeps its bytes; a multi-line quoted value is opaque; a " +
      "second run writes nothing; parse/render is the identity",
    weight: 0.5,
    gen: genCase,
    async check(input) {
      const { text, updates } = JSON.parse(utf8(input)) as {
        text: string;
        updates: Record<string, string>;
      };
      const set = (t: string) => setEnvKeys(parseEnv(t), updates);
      const after = renderEnv(set(text).doc);
      await checkWrite(text, after, updates, (t) => {
        const r = set(t);
        return { after: renderEnv(r.doc), changed: r.changed.length };
      });
    },
  },
  {
    name: "env02-root",
    group: "settings files",
    parser: "planRootEnv (src/host/env02.ts): Cortex 0.2's root .env (from .env.example)",
    onBadInput: "preflight error (exit 3) naming the key for an invalid key or unwritable value",
    property: "as dotenv-editor, with the stricter quoting `bash .` and Compose share; a plan of " +
      "the written file changes nothing",
    weight: 0.35,
    gen: genCase,
    async check(input) {
      const { text, updates } = JSON.parse(utf8(input)) as {
        text: string;
        updates: Record<string, string>;
      };
      const plan = planRootEnv({ current: text, keys: updates });
      await checkWrite(text, plan.after, updates, (t) => {
        const p = planRootEnv({ current: t, keys: updates });
        return { after: p.after, changed: p.changes.length };
      }, true);
    },
  },
];
