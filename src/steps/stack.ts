/**
 * Step `stack`: `up -d --no-build` with the compose file and our override, then wait until every
 * started service is healthy and the readiness URLs answer (src/host/stack.ts). Skipped with
 * --skip-start. From Cortex 0.1 to 0.2 in place, 0.1's containers are stopped first. When it fails during an upgrade, the runner rolls the host back.
 */
import { startStack, stopServicesExcept } from "../host/stack.ts";
import { isUpgrade01to02 } from "../host/upgrade01.ts";
import { overridePath } from "../layout.ts";
import type { InstallStep } from "./types.ts";

export const stackStep: InstallStep = {
  name: "stack",
  changesHost: true,
  when: ({ options }) => !options.skipStart,
  async run({ ctx, options: o, prepared: p, previous }) {
    if (isUpgrade01to02(previous, p.policy.line)) {
      // 0.1's stack stops before 0.2's starts: its gateway must not run beside the migration,
      // and services 0.2 no longer has must not keep running. Containers are stopped, not
      // removed (a rollback starts 0.1 again from its own compose files); volumes stay.
      ctx.log.info(
        `Stopping Cortex ${previous!.release} before Cortex ${p.plan.bundle.release} starts`,
      );
      await stopServicesExcept(ctx, previous!.stack?.project ?? o.project, []);
    }
    const stack = await startStack(ctx, {
      cortexDir: o.cortexDir,
      files: [o.composeFile, overridePath(o.composeFile)],
      project: o.project,
      profiles: p.profiles,
      compose: p.compose,
      readiness: p.readiness,
      waitTimeoutSec: o.waitTimeoutSec,
    });
    return { report: { stack, urls: stack.urls } };
  },
};
