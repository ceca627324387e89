/** Docker and Compose facts for the doctor: pure parsers plus one runner taking `run`. */
import type { ComposeChoice, ComposeCli } from "../docker.ts";
import type { Check, Run } from "./types.ts";

/** What `docker info` says that the doctor cares about. */
export interface DockerInfo {
  serverVersion?: string;
  clientVersion?: string;
  rootDir?: string;
  runtimes: string[];
  defaultRuntime?: string;
  driver?: string;
  os?: string;
}

export type DockerProblem = "cli-missing" | "permission" | "unreachable" | "other";

/** The Docker facts gathered by `dockerFacts`. */
export interface DockerFacts {
  cli: boolean;
  reachable: boolean;
  problem?: DockerProblem;
  /** The end of Docker's error output when the daemon could not be asked. */
  error?: string;
  info?: DockerInfo;
  nvidiaRuntime: boolean;
  compose?: { cmd: string[]; version: string; major: 1 | 2 };
  /** The compose asked for with `--compose` (default auto). */
  composeWanted?: ComposeChoice;
  /** Effective uid of this process (undefined off Linux). */
  uid?: number;
}

/**
 * Parses `docker info --format '{{json .}}'`. An unreachable daemon still prints JSON (with an
 * empty ServerVersion), so a missing ServerVersion means "no server facts".
 */
export function parseDockerInfo(json: string): DockerInfo {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(json.trim() || "{}");
  } catch {
    return { runtimes: [] };
  }
  const s = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);
  const client = j.ClientInfo as Record<string, unknown> | undefined;
  const runtimes = j.Runtimes && typeof j.Runtimes === "object"
    ? Object.keys(j.Runtimes as object).sort()
    : [];
  return {
    serverVersion: s(j.ServerVersion),
    clientVersion: s(client?.Version),
    rootDir: s(j.DockerRootDir),
    runtimes,
    defaultRuntime: s(j.DefaultRuntime),
    driver: s(j.Driver),
    os: s(j.OperatingSystem),
  };
}

/** Classifies why `docker info` failed from its exit code and stderr. */
export function classifyDockerError(code: number, stderr: string): DockerProblem {
  if (code === 127) return "cli-missing";
  if (/permission denied/i.test(stderr)) return "permission";
  if (
    /Cannot connect to the Docker daemon|Is the docker daemon running|connection refused|no such file or directory|error during connect/i
      .test(stderr)
  ) {
    return "unreachable";
  }
  return "other";
}

/**
 * Compares the leading dotted numbers of two versions ("20.10.24+dfsg1" vs "24.0", "v2.29.1");
 * returns -1, 0 or 1. Missing parts count as 0.
 */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) =>
    (v.trim().match(/^v?(\d+(?:\.\d+)*)/)?.[1] ?? "0").split(".").map(Number);
  const xa = parts(a);
  const xb = parts(b);
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const d = (xa[i] ?? 0) - (xb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * Asks Docker what the doctor needs: `docker info` (reachability, permission, version, data root,
 * runtimes) and which compose CLI exists. `compose` is injected (default: detectCompose).
 */
export async function dockerFacts(
  run: Run,
  compose: (want?: ComposeChoice) => Promise<ComposeCli | undefined>,
  uid?: number,
  composeWanted: ComposeChoice = "auto",
): Promise<DockerFacts> {
  const r = await run("docker", ["info", "--format", "{{json .}}"], { timeoutMs: 20_000 });
  const info = parseDockerInfo(r.stdout);
  const facts: DockerFacts = {
    cli: r.code !== 127,
    reachable: false,
    nvidiaRuntime: false,
    uid,
    ...(composeWanted !== "auto" ? { composeWanted } : {}),
  };
  if (r.code === 0 && info.serverVersion) {
    facts.reachable = true;
    facts.info = info;
    facts.nvidiaRuntime = info.runtimes.includes("nvidia");
  } else {
    facts.problem = classifyDockerError(r.code, r.stderr);
    facts.error = r.stderr.trim().split(/\r?\n/).slice(-3).join("\n");
    if (info.clientVersion) facts.info = info;
  }
  if (facts.cli) {
    const c = await compose(composeWanted);
    if (c) facts.compose = { cmd: c.cmd, version: c.version, major: c.major };
  }
  return facts;
}

/** Oldest engine we call fine; older ones lack features compose and `--gpus` rely on. */
export const MIN_ENGINE = "20.10";

/** Turns Docker facts into checks (pure). */
export function dockerChecks(f: DockerFacts): Check[] {
  const checks: Check[] = [];
  if (!f.cli) {
    checks.push({
      id: "docker.cli",
      title: "Docker CLI",
      status: "fail",
      detail: `Cannot find "docker" on PATH`,
      hint: "Install Docker Engine (docker-ce or Debian's docker.io) and run again",
    });
    return checks;
  }
  if (!f.reachable) {
    if (f.problem === "permission") {
      const who = f.uid === 0 ? "root" : `uid ${f.uid ?? "?"}`;
      checks.push({
        id: "docker.daemon",
        title: "Docker daemon",
        status: "fail",
        detail: `Cannot talk to the Docker daemon as ${who}: permission denied on its socket`,
        hint: "Add your user to the docker group: `sudo usermod -aG docker $USER`, then log out " +
          "and in again (or `newgrp docker`); or run cortex-install as root",
      });
    } else {
      checks.push({
        id: "docker.daemon",
        title: "Docker daemon",
        status: "fail",
        detail: `Cannot reach the Docker daemon: ${f.error || "docker info failed"}`,
        hint: "Start it (`sudo systemctl start docker`) or check DOCKER_HOST, then run again",
      });
    }
  } else {
    const v = f.info?.serverVersion ?? "?";
    const old = compareVersions(v, MIN_ENGINE) < 0;
    checks.push({
      id: "docker.daemon",
      title: "Docker daemon",
      status: old ? "warn" : "ok",
      detail: `engine ${v}${f.info?.clientVersion ? `, CLI ${f.info.clientVersion}` : ""}` +
        `${f.info?.rootDir ? `, data root ${f.info.rootDir}` : ""}` +
        `, runtimes: ${f.info?.runtimes.join(", ") || "none"}`,
      hint: old ? `Engine ${v} is older than ${MIN_ENGINE}: upgrade Docker Engine` : undefined,
    });
  }
  if (f.compose) {
    checks.push({
      id: "docker.compose",
      title: "Docker Compose",
      status: "ok",
      detail: `${f.compose.cmd.join(" ")} ${f.compose.version} (v${f.compose.major})`,
    });
  } else if (f.composeWanted === "v1") {
    checks.push({
      id: "docker.compose",
      title: "Docker Compose",
      status: "fail",
      detail: 'Cannot find Compose v1: "docker-compose" 1.x does not run (--compose v1)',
      hint: "Install docker-compose 1.x, or run with --compose v2 (or auto)",
    });
  } else if (f.composeWanted === "v2") {
    checks.push({
      id: "docker.compose",
      title: "Docker Compose",
      status: "fail",
      detail: 'Cannot find Compose v2: "docker compose" does not run (--compose v2)',
      hint: "Install the Compose v2 plugin (docker-compose-plugin), or run with --compose auto",
    });
  } else {
    checks.push({
      id: "docker.compose",
      title: "Docker Compose",
      status: "fail",
      detail: `Cannot find Compose: neither "docker compose" (v2) nor "docker-compose" (v1) runs`,
      hint: "Install the Compose v2 plugin (docker-compose-plugin) or docker-compose",
    });
  }
  return checks;
}
