/**
 * Step `stack`: `up -d --no-build` with the compose file and our override, then wait until every
 * started service is healthy and the readiness URLs answer (src/host/stack.ts). Skipped with
 * --skip-start. When it fails during an upgrade, the runner rolls the host back.
 */
import { startStack } from "../host/stack.ts";
import { overridePath } from "../layout.ts";
import type { InstallStep } from "./types.ts";

export const stackStep: InstallStep = {
  name: "stack",
  changesHost: true,
  when: ({ options }) => !options.skipStart,
  async run({ ctx, options: o, prepared: p }) {
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
