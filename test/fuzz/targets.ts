/** Every fuzz target, in report order. */
import type { Target } from "./harness.ts";
import { BUNDLE_TARGETS } from "./targets_bundle.ts";
import { TAR_TARGETS } from "./targets_tar.ts";
import { ENV_TARGETS } from "./targets_env.ts";
import { COMPOSE_TARGETS } from "./targets_compose.ts";
import { ARCHIVE_TARGETS } from "./targets_archive.ts";
import { STATE_TARGETS } from "./targets_state.ts";

export const TARGETS: Target[] = [
  ...BUNDLE_TARGETS,
  ...TAR_TARGETS,
  ...ENV_TARGETS,
  ...COMPOSE_TARGETS,
  ...ARCHIVE_TARGETS,
  ...STATE_TARGETS,
];
