/**
 * Names of files and folders in bundles, Cortex checkouts and the state dir, and every default
 * (dirs, project, timeouts), in one place: the flag table, `--help` and the code read them here.
 */

export const BUNDLE_MANIFEST = "manifest.json";
export const CHECKSUMS_FILE = "checksums.sha256";
export const STATUS_FILE = "status.json";
export const ADMIN_IMAGES_DIR = "images";
export const ADMIN_MANIFESTS_DIR = "manifests";
export const MODELS_DIR = "models";
export const MODELS_ARCHIVE = "models.tar.gz";
export const HF_CACHE_ARCHIVE = "hf-cache.tar.gz";
/** `model-<id>-files.tar.gz` in an Admin-UI package. */
export const MODEL_FILES_ARCHIVE_RE = /^model-([^/]+)-files\.tar\.gz$/;

// Cortex 0.2 bundles (`make prepare-offline` and the Admin UI's Transfer → Export write the same
// layout; cortex-0.2-facts §1).
/** Marks a Cortex 0.2 bundle; `kind` must be "cortex-bundle". Not covered by checksums. */
export const BUNDLE_JSON = "bundle.json";
/** The image list of a 0.2 bundle (ref, id, sha256, role, file); covered by checksums. */
export const IMAGES_JSON = "images.json";
/** `models/<served>/manifest.json` of a 0.2 bundle (not covered by checksums). */
export const MODEL_MANIFEST = "manifest.json";
/** `models/<served>/files/<path>`: the raw model files, placed at `<models dir>/<path>`. */
export const MODEL_FILES_DIR = "files";
/** The Admin UI's optional pg_dump (0.1 exports and 0.2 bundles). */
export const DB_DUMP = "db/cortex.sql";
/** Script bundles: Python wheels for `make build-offline` (not covered by checksums). */
export const WHEELS_DIR = "wheels";
/** Cortex 0.2's version pins (repo root, plain KEY=value); script bundles carry a copy. */
export const VERSIONS_ENV = "versions.env";
/** Cortex 0.1's version pins (`CORTEX_*="${CORTEX_*:-default}"`). */
export const SCRIPT_VERSIONS_ENV = "scripts/versions.env";
/** The value of bundle.json `kind`. */
export const CORTEX_BUNDLE_KIND = "cortex-bundle";

/** Cortex 0.1's script package folder (`make prepare-offline`). */
export const DEFAULT_BUNDLE_DIR = "cortex-offline-images";
/** Cortex 0.2's script bundle folder (`make prepare-offline`, OUTPUT_DIR's default). */
export const DEFAULT_BUNDLE_DIR_02 = "cortex-offline-bundle";
/** The Admin UI's export folder names: `cortex-bundle-YYYYMMDD-HHMMSS` (the newest wins). */
export const ADMIN_BUNDLE_PREFIX = "cortex-bundle-";
/** How the default bundle locations are named to people (help, errors). */
export const DEFAULT_BUNDLE_NAMES =
  `${DEFAULT_BUNDLE_DIR_02}/, the newest ${ADMIN_BUNDLE_PREFIX}*/, then ${DEFAULT_BUNDLE_DIR}/`;
/** Which Docker Compose runs the stack (`--compose`): auto = v2 when it runs, else v1. */
export const DEFAULT_COMPOSE = "auto";
/** The demo's Cortex release line (`demo --release`). */
export const DEFAULT_DEMO_RELEASE = "0.2";
export const DEFAULT_CORTEX_DIR = "Cortex";
export const COMPOSE_PROD = "docker.compose.prod.yaml";
export const COMPOSE_DEV = "docker.compose.dev.yaml";
/** Written by cortex-install into the Cortex dir; compose always runs with it. */
export const COMPOSE_OVERRIDE = "docker.compose.cortex-install.yaml";
export const BACKEND_ENV = "backend/.env";
/** The compose override's path: beside the compose file it extends. */
export function overridePath(composeFile: string): string {
  const i = composeFile.lastIndexOf("/");
  return `${i < 0 ? "." : i === 0 ? "" : composeFile.slice(0, i)}/${COMPOSE_OVERRIDE}`;
}
export const ROOT_ENV = ".env";

export const DEFAULT_PROJECT = "cortex";
export const DEFAULT_MODELS_DIR = "/var/cortex/models";
export const DEFAULT_HF_CACHE_DIR = "/var/cortex/hf-cache";
export const DEFAULT_STATE_DIR = "/var/lib/cortex-install";
/** How long to wait for the stack to become healthy (`--wait-timeout`). */
export const DEFAULT_WAIT_TIMEOUT_SEC = 300;
/** Where `demo` builds its throwaway tree (`--dir`). */
export const DEFAULT_DEMO_DIR = ".demo";
/** Cortex's own host ports, used when no compose file is given. */
export const DEFAULT_PORTS = [8084, 3001, 9090, 15432, 16379];

export const STATE_JOURNAL = "journal.json";
/** Database backups (`pg_dump` files), in the state dir. */
export const DB_BACKUPS_DIR = "db-backups";
/** How many database backups a successful run keeps (`--keep-backups`). */
export const DEFAULT_KEEP_BACKUPS = 3;
/** Cortex's compose service of its database (both release lines). */
export const DB_SERVICE = "postgres";
export const STATE_LOCK = "lock";
export const AUDIT_LOG = "audit.log";
/** Staging folders are named with this prefix, beside their target, and never seen by Cortex. */
export const STAGING_PREFIX = ".cortex-install-staging-";
