/**
 * Flags of every command, in one table: the parser and `--help` are both generated from it, so the
 * help can never list a flag that does not exist or miss one that does.
 */
import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { type FlagKind, redactArgsWith } from "../state/redact.ts";
import {
  DEFAULT_BUNDLE_NAMES,
  DEFAULT_COMPOSE,
  DEFAULT_DEMO_DIR,
  DEFAULT_DEMO_RELEASE,
  DEFAULT_HF_CACHE_DIR,
  DEFAULT_KEEP_BACKUPS,
  DEFAULT_MODELS_DIR,
  DEFAULT_PROJECT,
  DEFAULT_STATE_DIR,
  DEFAULT_WAIT_TIMEOUT_SEC,
} from "../layout.ts";

export interface FlagSpec {
  name: string;
  type: "string" | "boolean";
  /** Placeholder for string flags in help, e.g. "DIR". */
  arg?: string;
  help: string;
  default?: string;
  /**
   * The value is a secret, or may hold one: it is hidden (`***`) wherever the command line is
   * echoed (audit log, errors), in both `--flag=value` and `--flag value` forms.
   */
  secret?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: FlagSpec[];
  /** Extra help text after the flags. */
  notes?: string;
}

const bundle: FlagSpec = {
  name: "bundle",
  type: "string",
  arg: "DIR",
  help:
    `the offline bundle (a Cortex 0.2 bundle, a 0.1 script package or Admin-UI export, or a folder of docker save tars); default: ${DEFAULT_BUNDLE_NAMES} beside the executable, then in the working directory`,
};
const json: FlagSpec = {
  name: "json",
  type: "boolean",
  help: "print one JSON report on stdout (progress stays on stderr)",
};
const manifest: FlagSpec = {
  name: "manifest",
  type: "string",
  arg: "FILE",
  help: "release manifest replacing the embedded one (images, critical, env keys, sha256 pins)",
};
const allowUnlisted: FlagSpec = {
  name: "allow-unlisted",
  type: "boolean",
  help: "accept image tars that no checksum or pin covers (they are loaded unverified)",
};
const noVerify: FlagSpec = {
  name: "no-verify",
  type: "boolean",
  help: "DANGEROUS: skip SHA-256 verification entirely",
};
const offline: FlagSpec = {
  name: "offline",
  type: "boolean",
  help: "treat the host as offline, whatever the network probes say",
};
const online: FlagSpec = {
  name: "online",
  type: "boolean",
  help: "treat the host as online, whatever the network probes say",
};
const verbose: FlagSpec = { name: "verbose", type: "boolean", help: "show debug lines" };
const stateDir: FlagSpec = {
  name: "state-dir",
  type: "string",
  arg: "DIR",
  help: "where the journal, lock and audit log live",
  default: DEFAULT_STATE_DIR,
};
const cortexDir: FlagSpec = {
  name: "cortex-dir",
  type: "string",
  arg: "DIR",
  help:
    "the Cortex checkout with the compose files and backend/; default: Cortex beside the executable, then in the working directory",
};
const composeFile: FlagSpec = {
  name: "compose-file",
  type: "string",
  arg: "FILE",
  help:
    "compose file; default: docker.compose.prod.yaml in the Cortex dir if present, else docker.compose.dev.yaml",
};
const projectName: FlagSpec = {
  name: "project-name",
  type: "string",
  arg: "NAME",
  help: "compose project name",
  default: DEFAULT_PROJECT,
};
const modelsDir: FlagSpec = {
  name: "models-dir",
  type: "string",
  arg: "DIR",
  help: "where models are seeded",
  default: DEFAULT_MODELS_DIR,
};
const hfCacheDir: FlagSpec = {
  name: "hf-cache-dir",
  type: "string",
  arg: "DIR",
  help: "Hugging Face cache",
  default: DEFAULT_HF_CACHE_DIR,
};
const waitTimeout: FlagSpec = {
  name: "wait-timeout",
  type: "string",
  arg: "SECONDS",
  help: "how long to wait for the stack to become healthy",
  default: String(DEFAULT_WAIT_TIMEOUT_SEC),
};
const yes: FlagSpec = {
  name: "yes",
  type: "boolean",
  help: "answer yes to every question (never prompt)",
};
const help: FlagSpec = { name: "help", type: "boolean", help: "show this help" };
const compose: FlagSpec = {
  name: "compose",
  type: "string",
  arg: "v1|v2|auto",
  help:
    "which Docker Compose runs the stack: v2 (`docker compose`), v1 (`docker-compose` 1.x: Cortex 0.1 only, it refuses 0.2's compose files) or auto (v2 when it runs, else v1)",
  default: DEFAULT_COMPOSE,
};
const adminUser: FlagSpec = {
  name: "admin-user",
  type: "string",
  arg: "NAME",
  help:
    "Cortex 0.2: the first admin's name (ADMIN_BOOTSTRAP_USERNAME; default: the root .env's, else admin)",
};
const adminPasswordFile: FlagSpec = {
  name: "admin-password-file",
  type: "string",
  arg: "FILE",
  // A path, but people paste the password itself there: never echoed.
  secret: true,
  help:
    "Cortex 0.2: a file holding the first admin's password on one line (never a password on the command line); or ADMIN_BOOTSTRAP_PASSWORD in the environment; on a terminal, asked (hidden, twice)",
};
const corsOrigin: FlagSpec = {
  name: "cors-origin",
  type: "string",
  arg: "URL",
  help:
    "Cortex 0.2: the UI's origin(s) the gateway accepts (CORS_ALLOW_ORIGINS, comma-separated, never *); default: the root .env's, else http://<HOST_IP, or localhost>:<FRONTEND_PORT> (shown in the plan)",
};
const keepBackups: FlagSpec = {
  name: "keep-backups",
  type: "string",
  arg: "N",
  help:
    "database backups kept in db-backups/ of the state dir after a successful run (older ones are deleted; the one a rollback needs is always kept)",
  default: String(DEFAULT_KEEP_BACKUPS),
};
const restoreDb: FlagSpec = {
  name: "restore-db",
  type: "boolean",
  help:
    "restore the bundle's database dump (db/cortex.sql) even over a database that holds data or was restored before; that database is backed up first",
};
const skipDb: FlagSpec = {
  name: "skip-db",
  type: "boolean",
  help:
    "leave the database alone: no backup before an upgrade, no restore of the bundle's dump (a later rollback cannot restore the database)",
};
const modelConflict: FlagSpec = {
  name: "model-conflict",
  type: "string",
  arg: "skip|rename|replace|error",
  help:
    "Cortex 0.2: what Cortex does with a bundle's model whose served name is already registered: skip it, register it renamed (name-2), replace the record (not while it runs), or fail the registration",
  default: "skip",
};
const skipRegister: FlagSpec = {
  name: "skip-register",
  type: "boolean",
  help:
    "Cortex 0.2: seed the bundle's model files but do not register its models in Cortex (import them from the Admin UI instead)",
};
const rollbackSkipDb: FlagSpec = {
  name: "skip-db",
  type: "boolean",
  help: "roll back images and settings only: the database is neither backed up nor restored",
};

const installFlags: FlagSpec[] = [
  bundle,
  cortexDir,
  composeFile,
  projectName,
  modelsDir,
  hfCacheDir,
  stateDir,
  manifest,
  compose,
  adminUser,
  adminPasswordFile,
  corsOrigin,
  offline,
  online,
  {
    name: "profiles",
    type: "string",
    arg: "LIST",
    help:
      "comma-separated compose profiles; default: gpu when a GPU and the nvidia runtime are present, plus linux on Linux",
  },
  waitTimeout,
  { name: "skip-models", type: "boolean", help: "do not seed models" },
  { name: "skip-start", type: "boolean", help: "do not start the stack" },
  {
    name: "link",
    type: "boolean",
    help: "hardlink model files instead of copying when bundle and models dir share a filesystem",
  },
  {
    name: "allow-downgrade",
    type: "boolean",
    help: "install a bundle older than the installed release",
  },
  allowUnlisted,
  noVerify,
  keepBackups,
  restoreDb,
  skipDb,
  modelConflict,
  skipRegister,
  yes,
  json,
  { name: "dry-run", type: "boolean", help: "show the plan and change nothing (same as `plan`)" },
  verbose,
  help,
];

export const COMMANDS: CommandSpec[] = [
  {
    name: "install",
    summary: "verify, load, configure, seed models and start Cortex (the default command)",
    usage: "cortex-install [install] [flags]",
    flags: installFlags,
  },
  {
    name: "plan",
    summary: "show what install would do, change nothing",
    usage: "cortex-install plan [flags]",
    flags: installFlags.filter((f) => f.name !== "dry-run" && f.name !== "yes"),
  },
  {
    name: "verify",
    summary: "check every file of a bundle against its SHA-256 (changes nothing)",
    usage: "cortex-install verify --bundle DIR [flags]",
    flags: [bundle, manifest, allowUnlisted, json, verbose, help],
  },
  {
    name: "load",
    summary: "verify and load the bundle's images in one pass, skipping those already present",
    usage: "cortex-install load --bundle DIR [flags]",
    flags: [bundle, manifest, allowUnlisted, noVerify, json, verbose, help],
  },
  {
    name: "doctor",
    summary: "read-only preflight: Docker, Compose, disk, GPU, network, ports",
    usage: "cortex-install doctor [--bundle DIR] [flags]",
    flags: [
      bundle,
      manifest,
      composeFile,
      compose,
      projectName,
      modelsDir,
      hfCacheDir,
      stateDir,
      offline,
      online,
      json,
      verbose,
      help,
    ],
  },
  {
    name: "status",
    summary: "what is installed, from which bundle, images, models, services, last run",
    usage: "cortex-install status [flags]",
    flags: [stateDir, json, verbose, help],
  },
  {
    name: "rollback",
    summary:
      "restore the previous recorded release (images, env files, override, the database backed up before the upgrade) and start it",
    usage: "cortex-install rollback [flags]",
    flags: [stateDir, waitTimeout, rollbackSkipDb, keepBackups, yes, json, verbose, help],
  },
  {
    name: "demo",
    summary:
      "build a demo bundle (busybox stand-ins) in a throwaway directory and install it end to end",
    usage: "cortex-install demo [--dir DIR] [flags]",
    flags: [
      {
        name: "dir",
        type: "string",
        arg: "DIR",
        help: "where the demo bundle, Cortex dir, models and state go",
        default: DEFAULT_DEMO_DIR,
      },
      {
        name: "release",
        type: "string",
        arg: "0.2|0.1",
        help:
          "which Cortex line the demo imitates: 0.2 (a bundle.json bundle, root .env, generated secrets, first admin, Compose v2) or 0.1 (a script package, backend/.env)",
        default: DEFAULT_DEMO_RELEASE,
      },
      { ...adminPasswordFile, help: "0.2: the demo admin's password file (default: generated)" },
      compose,
      { name: "keep", type: "boolean", help: "leave the demo stack running" },
      waitTimeout,
      json,
      verbose,
      help,
    ],
  },
];

export type Parsed = {
  command: CommandSpec;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
};

/** Finds the command (default `install`) and parses its flags; unknown flags are usage errors. */
export function parseCommandLine(argv: string[]): Parsed | { global: "help" | "version" } {
  if (argv.length === 0) return parseFor(COMMANDS[0], argv);
  const first = argv[0];
  if (first === "--help" || first === "-h" || first === "help") {
    if (argv[1]) {
      const c = COMMANDS.find((c) => c.name === argv[1]);
      if (!c) throw unknownCommand(argv[1]);
      return { command: c, values: { help: true }, positionals: [] };
    }
    return { global: "help" };
  }
  if (first === "--version" || first === "-V") return { global: "version" };
  if (first.startsWith("-")) return parseFor(COMMANDS[0], argv);
  const cmd = COMMANDS.find((c) => c.name === first);
  if (!cmd) throw unknownCommand(first);
  return parseFor(cmd, argv.slice(1));
}

function unknownCommand(word: string): UsageError {
  const names = COMMANDS.map((c) => c.name);
  const near = didYouMean(word, names);
  // A word that is not a command may be a value typed where a command goes: echo it redacted.
  const shown = redactArgs([word])[0];
  return new UsageError(
    `Unknown command "${shown}"`,
    `${near ? `Did you mean \`${near}\`? ` : ""}Commands: ${
      names.join(", ")
    }. Run \`cortex-install --help\`.`,
  );
}

/**
 * The Damerau-Levenshtein distance (optimal string alignment: insertions, deletions,
 * substitutions and swaps of two neighbours each cost 1).
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The known word closest to a mistyped one, when it is close: at most a third of the word's
 * length in edits (at least 1, at most 3), ties going to the first in `known`. Case is ignored.
 */
export function didYouMean(word: string, known: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const limit = Math.min(3, Math.max(1, Math.floor(w.length / 3)));
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dist = editDistance(w, k.toLowerCase());
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  return bestD <= limit ? best : undefined;
}

/** The short forms of the table's flags. */
const SHORT: Record<string, string> = { help: "h", yes: "y" };

/**
 * The kind of a flag name (without dashes) in the table, over every command: it takes a value
 * when it is a string flag, it is secret when marked `secret`. Undefined for a name no command has.
 */
export function cliFlagKind(name: string): FlagKind | undefined {
  const long = Object.entries(SHORT).find(([, s]) => s === name)?.[0] ?? name;
  const specs = COMMANDS.flatMap((c) => c.flags).filter((f) => f.name === long);
  if (specs.length === 0) return undefined;
  return {
    takesValue: specs.some((f) => f.type === "string"),
    secret: specs.some((f) => f.secret === true),
  };
}

/**
 * A copy of a command line with the values of secret flags hidden, by the flag table (see
 * redactArgsWith in src/state/redact.ts): what the audit log records and what errors echo. A
 * flag the table lacks whose closest known flag is secret (`--admin-pasword-file`) counts as
 * that flag: a typo must not reveal the value.
 */
export function redactArgs(argv: readonly string[]): string[] {
  const names = [...new Set(COMMANDS.flatMap((c) => c.flags.map((f) => f.name)))];
  return redactArgsWith(argv, (name) => {
    const known = cliFlagKind(name);
    if (known) return known;
    const near = didYouMean(name, names);
    return near && cliFlagKind(near)?.secret ? cliFlagKind(near) : undefined;
  });
}

function parseFor(command: CommandSpec, args: string[]): Parsed {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const f of command.flags) {
    options[f.name] = { type: f.type };
    if (SHORT[f.name]) options[f.name].short = SHORT[f.name];
  }
  const helpHint = `Run \`cortex-install ${command.name} --help\`.`;
  // First pass, lenient: find unknown flags, to name them with a suggestion (never a value).
  const loose = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
  for (const t of loose.tokens ?? []) {
    if (t.kind !== "option" || Object.hasOwn(options, t.name)) continue;
    if (t.rawName.length === 2 && !t.rawName.startsWith("--")) {
      throw new UsageError(`Unknown flag "${t.rawName}" for "${command.name}"`, helpHint);
    }
    const near = didYouMean(t.name, command.flags.map((f) => f.name));
    const elsewhere = COMMANDS.filter((c) =>
      c !== command && c.flags.some((f) => f.name === t.name)
    ).map((c) => c.name);
    throw new UsageError(
      `Unknown flag "--${t.name}" for "${command.name}"`,
      near
        ? `Did you mean --${near}? ${helpHint}`
        : elsewhere.length
        ? `--${t.name} is a flag of ${elsewhere.join(", ")}. ${helpHint}`
        : helpHint,
    );
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    // node's messages name the flag, never its value.
    throw new UsageError(
      `${(e as Error).message.replace(/\. To specify a positional.*$/s, "").replace(/\n/g, " ")}`,
      helpHint,
    );
  }
  // A flag that takes one value, given twice: refuse rather than silently keep the last.
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== "option" || options[t.name]?.type !== "string") continue;
    if (seen.has(t.name)) {
      throw new UsageError(
        `Cannot use --${t.name} twice: it takes one value`,
        `Give --${t.name} once. ${helpHint}`,
      );
    }
    seen.add(t.name);
  }
  if (parsed.positionals.length > 0) {
    const tokens = parsed.tokens ?? [];
    const pos = tokens.find((t) => t.kind === "positional")!;
    const afterTerminator = tokens.some((t) =>
      t.kind === "option-terminator" && t.index < pos.index
    );
    // Echo it redacted by its place in the command line; never what follows a `--`.
    const shown = afterTerminator ? undefined : redactArgs(args)[pos.index];
    throw new UsageError(
      shown === undefined
        ? `Unexpected argument after "--" for "${command.name}"`
        : `Unexpected argument "${shown}" for "${command.name}"`,
      `${command.name} takes flags only. ${helpHint}`,
    );
  }
  const values: Record<string, string | boolean | undefined> = {};
  for (const f of command.flags) {
    const v = (parsed.values as Record<string, string | boolean | undefined>)[f.name];
    values[f.name] = v ?? (f.default !== undefined ? f.default : undefined);
    if (f.type === "string" && v === "") {
      throw new UsageError(`Flag --${f.name} needs a value`);
    }
  }
  if (values.offline && values.online) {
    throw new UsageError("--offline and --online cannot be used together");
  }
  if (values["restore-db"] && values["skip-db"]) {
    throw new UsageError("--restore-db and --skip-db cannot be used together");
  }
  return { command, values, positionals: [] };
}

/** Help for one command, generated from its flag table. */
export function commandHelp(c: CommandSpec): string {
  const rows = c.flags.map((f) => {
    const left = `  --${f.name}${f.arg ? ` ${f.arg}` : ""}${f.name === "help" ? ", -h" : ""}${
      f.name === "yes" ? ", -y" : ""
    }`;
    const def = f.default !== undefined ? ` (default: ${f.default})` : "";
    return `${left.padEnd(26)} ${f.help}${def}`;
  });
  return `${c.summary}\n\nUsage: ${c.usage}\n\nFlags:\n${rows.join("\n")}\n${
    c.notes ? `\n${c.notes}\n` : ""
  }`;
}

export const EXIT_CODES_HELP = `Exit codes:
  0    ok
  2    usage error (bad flag, or an answer needed with no TTY and no flag)
  3    preflight failed (nothing was changed)
  4    integrity failed (checksum mismatch, missing or unlisted file, unsafe archive, a
       database dump that is cut or damaged)
  5    Docker failed
  6    the stack did not become healthy (after an upgrade: rolled back, database restored), or
       a database restore failed (the host state is said)
  7    failed after the host was changed (what was done is in the journal; re-run to resume)
  130  interrupted (Ctrl-C / SIGTERM; re-run to resume) or declined at the prompt`;

/** The top-level help. */
export function globalHelp(version: string): string {
  const cmds = COMMANDS.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`).join("\n");
  return `cortex-install ${version}: install Cortex on an air-gapped host from an offline bundle

Usage: cortex-install [command] [flags]      (no command = install)

Commands:
${cmds}

Run \`cortex-install <command> --help\` for its flags.

${EXIT_CODES_HELP}
`;
}

/** A string flag's value, or undefined (boolean or absent). */
export const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
