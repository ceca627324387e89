/**
 * Fuzz targets: compose reading and interpolation (src/host/compose.ts), the doctor's port reader
 * (src/doctor/ports.ts) and `ports:` entries. Files start from Cortex's real compose files and
 * `.env` files, mutated, with YAML alias bombs, required variables, prototype keys, deep nesting
 * and port ranges spliced in.
 */
import {
  interpolate,
  MAX_HOST_PORTS,
  parseCompose,
  parsePortEntry,
} from "../../src/host/compose.ts";
import { portsFromCompose } from "../../src/doctor/ports.ts";
import {
  bytes,
  mutate,
  prop,
  REPO,
  type Rng,
  type Target,
  utf8,
  yamlAliasBomb,
} from "./harness.ts";

const read = (f: string) => Deno.readTextFileSync(`${REPO}/test/testdata/${f}`);
const COMPOSE = [
  read("cortex-v0.1.1/docker.compose.prod.yaml"),
  read("cortex-v0.1.1/docker.compose.dev.yaml"),
  read("cortex-v0.2.0/docker.compose.prod.yaml"),
  read("cortex-v0.2.0/docker.compose.dev.yaml"),
];
const DOTENV = [read("cortex-v0.1.1/.env.example"), read("cortex-v0.2.0/.env.example"), ""];

const SPLICES = [
  '    ports: ["${PORT:?set PORT}:80"]',
  '    ports: ["1-65535:80", "2000-9000:1"]',
  '    ports: ["${toString}8080:80", "${constructor:-9}:1"]',
  "    __proto__: {image: evil}",
  "    ports: [" +
  Array.from({ length: 50 }, (_, i) => `"${10000 + i * 100}-${10099 + i * 100}:80"`).join(",") +
  "]",
  "    image: ${A:-${B:-${C:-${D}}}}",
  "    image: ${",
  "    ports: [{published: 99999999999999999999, target: 1}, {published: '8000-8100'}]",
  "    ports: [" + "[".repeat(500) + "]".repeat(500) + "]",
];

/** A case: `{compose, dotenv}` as JSON. */
function genCase(rng: Rng): Uint8Array {
  let text = rng.pick(COMPOSE);
  if (rng.chance(0.15)) text = yamlAliasBomb(rng) + text;
  if (rng.chance(0.5)) {
    const lines = text.split("\n");
    const svc = lines.findIndex((l, i) =>
      i > 0 && /^ {2}[a-z]/.test(l) &&
      /^services:/.test(lines.slice(0, i).reverse().find((x) => /^\S/.test(x)) ?? "")
    );
    lines.splice(svc >= 0 ? svc + 1 : lines.length, 0, rng.pick(SPLICES));
    text = lines.join("\n");
  }
  if (rng.chance(0.6)) text = utf8(mutate(rng, bytes(text), 3));
  const dotenv = rng.chance(0.3) ? utf8(mutate(rng, bytes(rng.pick(DOTENV)), 2)) : rng.pick(DOTENV);
  return bytes(JSON.stringify({ compose: text, dotenv }));
}

const validPort = (p: number) => Number.isInteger(p) && p >= 0 && p <= 65535;

export const COMPOSE_TARGETS: Target[] = [
  {
    name: "compose-read",
    group: "compose",
    parser:
      "parseCompose (src/host/compose.ts): the compose file and its root .env, for plan and install",
    onBadInput: "preflight error (exit 3) naming the file: YAML errors, alias bombs (the YAML " +
      "parser's alias cap), unset `${VAR:?}`, bad `${`, no services, over the port cap",
    property: "host ports are integers in 0-65535, at most " + MAX_HOST_PORTS + " in all; " +
      "`${toString}` and `__proto__` are plain names; unset variables are variable names",
    gen: genCase,
    check(input) {
      const { compose, dotenv } = JSON.parse(utf8(input)) as { compose: string; dotenv: string };
      const m = parseCompose("/tmp/cit-fuzz/docker.compose.prod.yaml", compose, {
        dotenvText: dotenv,
        env: {},
      });
      let total = 0;
      for (const s of m.services) {
        total += s.ports.length;
        for (const p of s.ports) prop(validPort(p), `port ${p}`);
        prop(s.image === undefined || !s.image.includes("function"), `image ${s.image}`);
      }
      prop(total <= MAX_HOST_PORTS, `${total} ports`);
      for (const u of m.unset) prop(/^[A-Za-z_][A-Za-z0-9_]*$/.test(u), `unset ${u}`);
    },
  },
  {
    name: "compose-ports",
    group: "compose",
    parser: "portsFromCompose (src/doctor/ports.ts): the doctor's port check",
    onBadInput: "the same preflight errors as compose-read (one reader): never a stack trace",
    property: "ports are integers in 0-65535, at most " + MAX_HOST_PORTS + " in all",
    gen: genCase,
    check(input) {
      const { compose, dotenv } = JSON.parse(utf8(input)) as { compose: string; dotenv: string };
      const vars = new Map(dotenv.split("\n").map((l) => l.split("=", 2) as [string, string]));
      const wants = portsFromCompose(compose, (k) => vars.get(k), "docker.compose.prod.yaml");
      prop(wants.length <= MAX_HOST_PORTS + 64, `${wants.length} ports`);
      for (const w of wants) prop(validPort(w.port), `port ${w.port}`);
    },
  },
  {
    name: "interpolate",
    group: "compose",
    parser: "interpolate (src/host/compose.ts): Compose's `${VAR}` rules",
    onBadInput: "InterpolationError, reported as a preflight error naming the file",
    property: "text without `$` is unchanged; `$$` is one `$`; a variable named like an " +
      "Object.prototype key is unset",
    gen(rng) {
      const base = rng.pick([
        "${A:-x}-${B}-$$-$C-${D:?msg}",
        "plain text",
        "${toString}${constructor:-d}",
        "${A:-${B:-${C}}}",
        "${" + "${".repeat(200),
      ]);
      return mutate(rng, bytes(base), 3);
    },
    check(input) {
      const s = utf8(input);
      const vars: Record<string, string> = Object.assign(Object.create(null), {
        A: "a",
        C: "c",
        D: "d",
      });
      const out = interpolate(s, (k) => vars[k]);
      if (!s.includes("$")) prop(out === s, "text without $ changed");
      prop(!out.includes("[native code]") && !out.includes("function "), "prototype leaked");
    },
  },
  {
    name: "port-entry",
    group: "compose",
    parser: "parsePortEntry (src/host/compose.ts): one `ports:` entry, short or long syntax",
    onBadInput: "an entry it cannot read publishes no port it would check",
    property: "at most 1000 ports per entry, each an integer in 0-65535; never throws",
    gen(rng) {
      return mutate(
        rng,
        bytes(
          rng.pick([
            "127.0.0.1:8080:80/tcp",
            "9000-9002:80",
            "[::1]:5432:5432",
            "8084",
            "1-65535:1",
          ]),
        ),
        3,
      );
    },
    check(input) {
      const p = parsePortEntry(utf8(input));
      prop(p.ports.length <= 1000, `${p.ports.length} ports`);
      for (const x of p.ports) prop(validPort(x), `port ${x}`);
    },
  },
];
