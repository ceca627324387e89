/**
 * The plan of the model registration (issue 9 §5): which of a Cortex 0.2 bundle's model records
 * the `register` step hands to Cortex's bundles API, where the gateway sees the bundle, and why
 * nothing will be registered. Pure but for `Deno.realPath` of the bundle dir.
 *
 * The gateway reads the bundle at its own path: the plan computes it from the compose file as it
 * will run (the gateway's bind mounts and CORTEX_TRANSFER_DIRS), and refuses (exit 3, nothing
 * changed) when the bundle lies outside every transfer dir. The step computes it again from the
 * running container (its real mounts) before it asks Cortex.
 */
import type { Bundle } from "../bundle/types.ts";
import { InstallError } from "../errors.ts";
import type { ComposeService } from "./compose.ts";
import {
  bundleContainerPath,
  DEFAULT_TRANSFER_DIRS,
  type GatewayView,
  type ModelConflict,
} from "./cortex_api.ts";

/** What the `register` step will do, shown in the plan (no password). */
export interface RegisterPlan {
  /** The served names of the bundle's model records. */
  models: string[];
  /** The bundle as the gateway sees it (e.g. /host/media/usb/bundle). */
  containerPath: string;
  /** The bundle on this host (symlinks resolved). */
  hostPath: string;
  conflict: ModelConflict;
  /** The admin that logs in (the name only). */
  user: string;
  /** The gateway's base URL (from the release's readiness URL). */
  baseUrl: string;
}

/** The gateway's view of the host from its compose service (bind mounts, CORTEX_TRANSFER_DIRS). */
export function gatewayViewFromService(s: ComposeService): GatewayView {
  const dirs = s.environment.CORTEX_TRANSFER_DIRS;
  return {
    mounts: s.volumes.map((v) => ({ source: v.source, destination: v.destination })),
    transferDirs: dirs === undefined
      ? DEFAULT_TRANSFER_DIRS
      : dirs.split(",").map((d) => d.trim()).filter(Boolean),
  };
}

/** The served names of a bundle's model records (`models/<served>/manifest.json`). */
export function modelRecords(bundle: Bundle): string[] {
  return bundle.models.flatMap((m) => m.kind === "bundle-model" ? [m.name] : []);
}

export interface PlanRegisterInput {
  bundle: Bundle;
  /** The gateway service as compose will run it; undefined: none in the file. */
  gateway?: ComposeService;
  /** The gateway's readiness URL (its origin is the API's base). */
  readinessUrl?: string;
  conflict: ModelConflict;
  user: string;
  /** Why nothing is registered, decided by the caller (e.g. "--skip-start"). */
  skip?: string;
}

/**
 * The registration plan, or why there is none (`skipped`). Throws a preflight error (exit 3) when
 * the bundle has model records but lies outside every transfer dir of the gateway.
 */
export async function planRegister(
  i: PlanRegisterInput,
): Promise<{ plan?: RegisterPlan; skipped?: string }> {
  const models = modelRecords(i.bundle);
  if (models.length === 0) return {};
  if (i.skip) return { skipped: i.skip };
  if (!i.gateway) return { skipped: "the compose file runs no gateway" };
  if (!i.readinessUrl) return { skipped: "the release names no readiness URL for the gateway" };
  let hostPath = i.bundle.dir;
  try {
    hostPath = await Deno.realPath(i.bundle.dir);
  } catch {
    // Read by the preflight already; keep the path as given.
  }
  let containerPath: string;
  try {
    containerPath = bundleContainerPath(hostPath, gatewayViewFromService(i.gateway));
  } catch (e) {
    if (!(e instanceof InstallError)) throw e;
    throw new InstallError(
      e.step,
      e.message,
      e.exitCode,
      `${
        e.hint ?? ""
      } Or pass --skip-register to install without registering the models (the Admin UI can import them later).`
        .trim(),
    );
  }
  return {
    plan: {
      models,
      containerPath,
      hostPath,
      conflict: i.conflict,
      user: i.user,
      baseUrl: new URL(i.readinessUrl).origin,
    },
  };
}
