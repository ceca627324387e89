/**
 * Step `retag`: give every image the compose file runs the ref it runs it by, from an image of
 * the same repository that was shipped or is present (`prom/prometheus:v2.47.0` -> `:latest`),
 * as the preflight planned; never a pull or a build.
 */
import { tagImage } from "../docker.ts";
import type { InstallPlan, InstallStep } from "./types.ts";

export const retagStep: InstallStep = {
  name: "retag",
  changesHost: true,
  async run({ ctx, prepared: p }) {
    const retags: InstallPlan["retags"] = [];
    for (const n of p.imagePlan.needs) {
      if (n.source !== "retag" || !n.from) continue;
      await tagImage(ctx.docker, n.from, n.ref);
      retags.push({ service: n.service, from: n.from, to: n.ref });
    }
    return { report: { retags } };
  },
};
