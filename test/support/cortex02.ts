/**
 * Cortex 0.2 worlds for the install tests: a checkout made from Cortex's real 0.2 files
 * (test/testdata/cortex-v0.2.0), a release policy whose images live under a test prefix (a
 * `--manifest` file: the embedded 0.2 line with its repositories moved under the prefix, so the
 * test never creates a real `postgres:16`), and, for the journeys that start the stack, a
 * derived copy of the production compose file that stays on loopback.
 *
 * The derived copy (`docker.compose.prod.loopback-test.yaml`, named so) keeps what cortex-install
 * acts on: the `name:`, every `environment:` entry with its `${KEY:?...}` and `${KEY:-default}`,
 * `depends_on` with `condition: service_healthy`, `deploy.resources.limits` (Compose v2 only),
 * the models mount of the gateway, and images by the same interpolation (`${POSTGRES_IMAGE:-...}`,
 * `cortex-gateway:${CORTEX_VERSION:-0.2.0}`) under the prefix. It changes what a loopback-only
 * test host needs: every service on the host network with no `ports:` (the rule of
 * environment.md), busybox stand-ins that serve Cortex's readiness paths (`/health` →
 * {"status":"ok"}, `/login`, `/-/ready`) on the root .env's ports, 1 s healthchecks, no other
 * volumes, no `build:`, and no linux/gpu profile services (node-exporter, cAdvisor and dcgm need
 * the host's /proc, /sys and a GPU).
 */
import { join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** Cortex's real 0.2 files, unmodified. */
export const CORTEX_02 = join(REPO, "test/testdata/cortex-v0.2.0");
/** The derived compose file's name: it says what it is. */
export const LOOPBACK_COMPOSE = "docker.compose.prod.loopback-test.yaml";

/**
 * The embedded policy's 0.2 line with every image repository moved under `prefix/` (its last
 * path part kept: `vllm/vllm-openai` -> `<prefix>/vllm-openai`) and, when given, the gateway's
 * readiness URL on `gatewayPort` (`noReadiness`: none, for tests without a network). Returns
 * the JSON text of a schema 2 set holding that line.
 */
export async function policy02Text(
  prefix: string,
  o: { gatewayPort?: number; noReadiness?: boolean } = {},
): Promise<string> {
  const gatewayPort = o.gatewayPort;
  const set = JSON.parse(await Deno.readTextFile(join(REPO, "assets/manifest.json")));
  const line = set.lines.find((l: { line: string }) => l.line === "0.2");
  for (const img of line.images) {
    img.repository = `${prefix}/${String(img.repository).split("/").pop()}`;
  }
  if (gatewayPort !== undefined) {
    for (const r of line.readiness) {
      if (r.service === "gateway") r.url = `http://127.0.0.1:${gatewayPort}/health`;
    }
  }
  if (o.noReadiness) line.readiness = [];
  return JSON.stringify({ schema: 2, lines: [line] }, null, 2);
}

/** Host ports of one loopback stack (each a free one, see freePort). */
export interface Ports02 {
  gateway: number;
  frontend: number;
  prom: number;
  postgres: number;
  redis: number;
}

/**
 * Copies Cortex's real 0.2 files into `dir` (a checkout: compose files, versions.env,
 * .env.example, backend/, infra/). Returns the checkout's path.
 */
export async function copyCheckout02(dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const r = await new Deno.Command("cp", { args: ["-a", `${CORTEX_02}/.`, dir] }).output();
  if (!r.success) throw new Error(`cp -a ${CORTEX_02} ${dir} failed`);
  return dir;
}

/**
 * The operator's root .env of a loopback checkout: Cortex's .env.example with the host ports
 * moved to `ports` (every other byte as Cortex ships it; its blank secrets stay blank).
 */
export async function loopbackRootEnv(ports: Ports02): Promise<string> {
  let text = await Deno.readTextFile(join(CORTEX_02, ".env.example"));
  const set = (key: string, value: number) => {
    const re = new RegExp(`^${key}=.*$`, "m");
    if (!re.test(text)) throw new Error(`.env.example has no ${key}=`);
    text = text.replace(re, `${key}=${value}`);
  };
  set("FRONTEND_PORT", ports.frontend);
  set("PROM_PORT", ports.prom);
  set("CORTEX_POSTGRES_PORT", ports.postgres);
  set("CORTEX_REDIS_PORT", ports.redis);
  return text;
}

/** A busybox stand-in serving `files` (path -> body) on `port`; SIGTERM ends it at once. */
function standIn(port: string, files: Record<string, string>): string[] {
  const writes = Object.entries(files).map(([path, body]) => {
    const dir = path.slice(0, path.lastIndexOf("/"));
    return `busybox mkdir -p /www${dir} && echo '${body}' > /www${path}`;
  });
  return [
    "sh",
    "-c",
    `trap 'exit 0' TERM; ${writes.join(" && ")} && httpd -f -p 127.0.0.1:${port} -h /www & wait`,
  ];
}

const health = (url: string) => ({
  test: ["CMD-SHELL", `wget -q -O- ${url} >/dev/null`],
  interval: "3s",
  timeout: "3s",
  retries: 20,
});

/**
 * Derives the loopback compose file from Cortex's real prod compose text (see the module
 * comment): images under `prefix/`, the gateway's stand-in on `gatewayPort` (Cortex's gateway
 * uses the host network on 8084; the stand-in takes a free port), the others on the root
 * .env's ports. Throws when the real file no longer has what the derivation expects.
 */
export function loopbackCompose02(realText: string, prefix: string, gatewayPort: number): string {
  // deno-lint-ignore no-explicit-any
  const doc = parseYaml(realText, { merge: true }) as any;
  const images: Record<string, [string, string]> = {
    postgres: ["${POSTGRES_IMAGE:-postgres:16}", `\${POSTGRES_IMAGE:-${prefix}/postgres:16}`],
    redis: ["${REDIS_IMAGE:-redis:7}", `\${REDIS_IMAGE:-${prefix}/redis:7}`],
    gateway: [
      "cortex-gateway:${CORTEX_VERSION:-0.2.0}",
      `${prefix}/cortex-gateway:\${CORTEX_VERSION:-0.2.0}`,
    ],
    frontend: [
      "cortex-frontend:${CORTEX_VERSION:-0.2.0}",
      `${prefix}/cortex-frontend:\${CORTEX_VERSION:-0.2.0}`,
    ],
    prometheus: [
      "${PROMETHEUS_IMAGE:-prom/prometheus:v2.55.1}",
      `\${PROMETHEUS_IMAGE:-${prefix}/prometheus:v2.55.1}`,
    ],
  };
  const ports: Record<string, string> = {
    postgres: "${CORTEX_POSTGRES_PORT:-15432}",
    redis: "${CORTEX_REDIS_PORT:-16379}",
    gateway: String(gatewayPort),
    frontend: "${FRONTEND_PORT:-3001}",
    prometheus: "${PROM_PORT:-19090}",
  };
  const served: Record<string, Record<string, string>> = {
    postgres: { "/health": '{"status":"ok"}' },
    redis: { "/health": '{"status":"ok"}' },
    gateway: { "/health": '{"status":"ok"}' },
    frontend: { "/login": "<html>Cortex (stand-in)</html>" },
    prometheus: { "/-/ready": "Prometheus Server is Ready." },
  };
  const services: Record<string, Record<string, unknown>> = {};
  for (const [name, [was, now]] of Object.entries(images)) {
    const s = doc.services?.[name];
    if (!s || s.image !== was) {
      throw new Error(`the real compose's ${name} image is ${s?.image}, the test expects ${was}`);
    }
    delete s.ports;
    delete s.extra_hosts;
    delete s.build;
    delete s.volumes;
    s.image = now;
    s.network_mode = "host";
    s.command = standIn(ports[name], served[name]);
    s.healthcheck = health(`http://127.0.0.1:${ports[name]}${Object.keys(served[name])[0]}`);
    services[name] = s;
  }
  services.gateway.volumes = ["${CORTEX_MODELS_DIR:-/var/cortex/models}:/var/cortex/models:rw"];
  const header =
    "# DERIVED for a loopback-only test host from Cortex 0.2's docker.compose.prod.yaml" +
    " (see test/support/cortex02.ts)\n";
  return header + stringifyYaml({ name: doc.name, services }, { lineWidth: 0 });
}
