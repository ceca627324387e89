/**
 * The host faults the journeys of faults_test.ts inflict on a real install, one entry each: what
 * is done to the host, the exit code and message the run must end with, and what must hold
 * afterwards. faults_test.ts drives its assertions from this table and checks that it ran every
 * entry, so the table cannot drift from what is tested; docs/RELIABILITY.md is written from it.
 */

/** One host fault and what `install` must do about it. */
export interface FaultCase {
  /** Stable id, e.g. `docker-unreachable`. */
  id: string;
  /** What the journey does to the host. */
  fault: string;
  /** The exit code the run must end with (README's table). */
  expectExit: number;
  /** A regular expression (source) the run's stderr must match. */
  expectMessage: string;
  /** What the journey checks afterwards, the next run included. */
  property: string;
}

const AFTER_PREFLIGHT =
  "nothing changed (Cortex dir byte for byte, no model written, no container started); " +
  "the lock is released; the next run, the fault removed, installs (exit 0)";
const INTERRUPTED =
  "exit 130 with no stack trace; the journal records the run as interrupted with no step after " +
  "this one begun; no staging folder, half-copied model or temp file left; the env files are " +
  "the original bytes or completely written; the next run resumes and ends healthy (exit 0)";

/** Every host fault of the journeys, in the order they run. */
export const FAULT_CASES: FaultCase[] = [
  {
    id: "docker-unreachable",
    fault: "the Docker daemon is down before the run (DOCKER_HOST names a socket nobody serves)",
    expectExit: 3,
    expectMessage: "Cannot reach the Docker daemon",
    property: AFTER_PREFLIGHT,
  },
  {
    id: "docker-socket-denied",
    fault: "the Docker socket is not accessible to the user (run as uid 65534, not in the " +
      "docker group)",
    expectExit: 3,
    expectMessage: "permission denied on its socket",
    property: `${AFTER_PREFLIGHT}; the hint says how to get access (docker group or root)`,
  },
  {
    id: "docker-stopped-mid-load",
    fault: "the Docker daemon goes away in the middle of `docker load` (the socket proxy the " +
      "run talks to is killed when the first load starts)",
    expectExit: 5,
    expectMessage: 'Cannot load image "[^"]+\\.tar": docker load exited',
    property: "no stack trace; the journal records the run as failed in the load step; the next " +
      "run with the daemon back loads what is missing and installs (exit 0)",
  },
  {
    id: "models-fs-full",
    fault: "the models filesystem fills up during the model copy (a tmpfs whose inode table " +
      "runs out after the first file: ENOSPC; the byte check of the preflight passes)",
    expectExit: 7,
    expectMessage: "No space left on device",
    property: "the staging folder is removed; no model folder appears where Cortex looks; a " +
      "model already there is untouched (bytes and mtime); the hint says to free space; once " +
      "space is freed the next run installs the model byte for byte (exit 0)",
  },
  {
    id: "models-dir-readonly",
    fault: "the models dir is read-only (a read-only bind mount)",
    expectExit: 3,
    expectMessage: "Cannot write into the models dir .*read-only filesystem",
    property: AFTER_PREFLIGHT,
  },
  {
    id: "cortex-dir-no-backend",
    fault: "the Cortex dir has no backend/ folder",
    expectExit: 3,
    expectMessage: "Cannot use the Cortex dir .*no backend/ folder",
    property: `${AFTER_PREFLIGHT}; no backend/ is created`,
  },
  {
    id: "compose-syntax-error",
    fault: "the compose file has a YAML syntax error",
    expectExit: 3,
    expectMessage: "Cannot read compose file .*docker\\.compose\\.prod\\.yaml",
    property: AFTER_PREFLIGHT,
  },
  {
    id: "port-held",
    fault: "a port the stack needs (the gateway's, on the host network) is held by another " +
      "process",
    expectExit: 3,
    expectMessage: "Cannot bind the stack's ports: \\d+ \\(gateway\\) is held by",
    property: `${AFTER_PREFLIGHT}, the stack healthy`,
  },
  {
    id: "sigterm-verify",
    fault: "SIGTERM while the verify step runs",
    expectExit: 130,
    expectMessage: "interrupted",
    property: INTERRUPTED,
  },
  {
    id: "sigterm-models",
    fault: "SIGTERM while the models step runs",
    expectExit: 130,
    expectMessage: "interrupted",
    property: INTERRUPTED,
  },
  {
    id: "sigterm-load",
    fault: "SIGTERM while the load step runs",
    expectExit: 130,
    expectMessage: "interrupted",
    property: `${INTERRUPTED}; the next run loads what is missing`,
  },
  {
    id: "sigterm-settings",
    fault: "SIGTERM while the settings step runs",
    expectExit: 130,
    expectMessage: "interrupted",
    property: INTERRUPTED,
  },
  {
    id: "sigterm-stack",
    fault: "SIGTERM while the stack step runs",
    expectExit: 130,
    expectMessage: "interrupted",
    property: INTERRUPTED,
  },
];
