/**
 * Issue 10 items 2-4: compose files and `.env` keys are data: YAML errors and unset required
 * variables are preflight errors in every reader (doctor's port reader included), `${toString}`
 * is an unset variable, and port ranges are capped in total.
 */
import assert from "node:assert/strict";
import { InstallError } from "../errors.ts";
import { MAX_HOST_PORTS, parseCompose } from "./compose.ts";
import { portsFromCompose } from "../doctor/ports.ts";

const noEnv = () => undefined;

function isPreflight(re: RegExp) {
  return (e: unknown) => e instanceof InstallError && e.exitCode === 3 && re.test(e.message);
}

Deno.test("issue 10: a YAML error in the compose file is a preflight error in doctor and install", () => {
  const text = "services:\n  a:\n    ports: [\n";
  assert.throws(
    () => portsFromCompose(text, noEnv, "c.yml"),
    isPreflight(/Cannot read compose file "c\.yml"/),
  );
  assert.throws(() => parseCompose("c.yml", text), isPreflight(/Cannot read compose file/));
});

Deno.test("issue 10: an unset ${VAR:?} in ports: is a preflight error naming the variable", () => {
  const text = 'services:\n  a:\n    image: x\n    ports: ["${PORT:?set PORT}:80"]\n';
  assert.throws(() => portsFromCompose(text, noEnv, "c.yml"), isPreflight(/PORT/));
  assert.throws(() => parseCompose("c.yml", text), isPreflight(/PORT/));
});

Deno.test("issue 10: a YAML alias bomb is refused, not expanded", () => {
  let text = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n';
  for (let i = 1; i < 12; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    text += `${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(",")}]\n`;
  }
  text += "services:\n  s:\n    image: x\n    ports: *l\n";
  assert.throws(() => portsFromCompose(text, noEnv, "c.yml"), isPreflight(/c\.yml/));
  assert.throws(() => parseCompose("c.yml", text), isPreflight(/c\.yml/));
});

Deno.test("issue 10: ${toString} and a __proto__ key read as plain names", () => {
  const text =
    'services:\n  a:\n    image: "img${toString}${constructor}"\n    __proto__: {x: 1}\n';
  const m = parseCompose("c.yml", text, { dotenvText: "A=1\n" });
  assert.equal(m.services[0].image, "img");
  assert.deepEqual(m.unset, ["constructor", "toString"]);
  const m2 = parseCompose("c.yml", text, { env: {} });
  assert.equal(m2.services[0].image, "img");
  const ports = portsFromCompose('services:\n  a:\n    ports: ["${toString}8080:80"]\n', noEnv);
  assert.deepEqual(ports.map((p) => p.port), [8080]);
});

Deno.test("issue 10: port ranges are capped in total, naming the cap", () => {
  const entries = Array.from(
    { length: 10 },
    (_, i) => `"${10000 + i * 1000}-${10999 + i * 1000}:80"`,
  );
  const text = `services:\n  a:\n    image: x\n    ports: [${entries.join(", ")}]\n`;
  assert.ok(10 * 1000 > MAX_HOST_PORTS);
  assert.throws(() => portsFromCompose(text, noEnv, "c.yml"), isPreflight(/port cap/));
  assert.throws(() => parseCompose("c.yml", text), isPreflight(/port cap/));
  // A real range is fine.
  const ok = portsFromCompose('services:\n  a:\n    ports: ["9000-9002:80"]\n', noEnv);
  assert.deepEqual(ok.map((p) => p.port), [9000, 9001, 9002]);
});

Deno.test("fuzz finding: deep [ / { nesting is refused before the YAML parser recurses", () => {
  const text = "services:\n  a:\n    image: x\n    ports: " + "[".repeat(200_000) + "\n";
  assert.throws(() => parseCompose("c.yml", text), isPreflight(/nesting cap/));
  assert.throws(() => portsFromCompose(text, noEnv, "c.yml"), isPreflight(/nesting cap/));
  // Balanced braces of Go templates in a command are fine.
  const ok = 'services:\n  a:\n    image: x\n    command: ["{{json .}}", "${A:-${B}}"]\n';
  assert.equal(parseCompose("c.yml", ok).services.length, 1);
});
