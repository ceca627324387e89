/**
 * Step `wheels` (Cortex 0.2 script bundles): `wheels/` -> `backend/wheels/` when that folder is
 * absent, as Cortex's loader does, for `make build-offline` (src/host/wheels.ts).
 */
import { copyWheels } from "../host/wheels.ts";
import type { InstallStep } from "./types.ts";

export const wheelsStep: InstallStep = {
  name: "wheels",
  changesHost: true,
  when: ({ prepared }) => prepared.wheels?.action === "copy",
  async run({ ctx, prepared: p }) {
    const w = p.wheels!;
    const r = await copyWheels(ctx, p.bundle.dir, w);
    ctx.log.info(
      r.kept
        ? `${w.target} appeared meanwhile: kept as it is`
        : `Copied ${r.files} wheel file(s) to ${w.target}`,
    );
    return {
      report: {
        wheels: { target: w.target, action: r.kept ? "kept" : "copied", files: r.files },
      },
    };
  },
};
