/**
 * Step `register` (issue 9 §5): after `stack` is healthy, register a Cortex 0.2 bundle's model
 * records in Cortex through its bundles API (host/cortex_api.ts): log in as the first admin
 * (the 0.2 settings' name and password), scan the bundle at the gateway's path, import with
 * `copy_files=false` (the files are already seeded and verified by `models`) and
 * `load_images=false` (`load` did that), by `--model-conflict` (default skip), and poll the job to
 * its end. Each model is reported as created, skipped or replaced.
 *
 * It runs only when the preflight planned it (host/register.ts: a 0.2 bundle with model records,
 * the stack started, the bundle under a transfer dir of the gateway). The gateway's path is taken
 * again from the running container's mounts. A failure here does not roll back: the new release
 * is installed and healthy; the run exits 7 and a re-run (or the Admin UI's import) registers.
 * No password or session cookie appears in any output.
 */
import { ExitCode, InstallError, InterruptedError } from "../errors.ts";
import {
  bundleContainerPath,
  gatewayViewFromContainer,
  type ModelOutcome,
  registerModels,
} from "../host/cortex_api.ts";
import { listContainers } from "../host/stack.ts";
import type { InstallStep } from "./types.ts";

/** The `register` part of the install report. */
export interface RegisterReport {
  conflict: string;
  /** The bundle as the gateway read it. */
  containerPath: string;
  models: ModelOutcome[];
}

export const registerModelsStep: InstallStep = {
  name: "register",
  changesHost: true,
  when: ({ prepared, options }) => prepared.register !== undefined && !options.skipStart,
  async run({ ctx, options: o, prepared: p }) {
    const plan = p.register!;
    const password = p.settings02?.admin.password;
    const fail = (msg: string, hint?: string) =>
      new InstallError(
        "register",
        msg,
        ExitCode.Partial,
        hint ??
          `Cortex ${p.plan.bundle.release} is installed and running; fix the cause and run the same command again (registered models are skipped), or import the bundle from the Admin UI (Transfer).`,
      );
    if (!password) {
      throw fail(
        `Cannot register the bundle's models in Cortex: no password for the admin "${plan.user}"`,
      );
    }
    // Where the running gateway sees the bundle (its real mounts), else where the plan said.
    let containerPath = plan.containerPath;
    const gw = (await listContainers(ctx, o.project).catch(() => []))
      .find((c) => c.service === "gateway" && c.status === "running" && !c.oneoff)?.id;
    if (gw) {
      try {
        const view = await gatewayViewFromContainer(ctx.docker, gw, ctx.signal);
        containerPath = bundleContainerPath(plan.hostPath, view);
      } catch (e) {
        if (e instanceof InstallError && e.exitCode === ExitCode.Preflight) {
          throw fail(e.message, e.hint);
        }
        ctx.log.debug(`Cannot read the gateway's mounts (${e}); using ${containerPath}`);
      }
    }
    ctx.log.info(
      `Registering ${plan.models.length} model(s) in Cortex from ${containerPath} (--model-conflict ${plan.conflict})`,
    );
    let models: ModelOutcome[];
    try {
      const r = await registerModels({
        baseUrl: plan.baseUrl,
        signal: ctx.signal,
        sleep: (ms, s) => ctx.sleep(ms, s),
        now: () => ctx.now().getTime(),
        ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
      }, {
        username: plan.user,
        password,
        containerPath,
        conflict: plan.conflict,
        timeoutMs: o.waitTimeoutSec * 1000,
        onStatus: (j) => ctx.log.debug(`Cortex bundles job ${j.id ?? ""}: ${j.status}`),
      });
      models = r.models;
    } catch (e) {
      if (e instanceof InterruptedError) throw e;
      if (e instanceof InstallError) throw fail(e.message, e.hint);
      throw e;
    }
    for (const m of models) {
      ctx.log.info(
        `  model ${m.source}: ${m.status}${
          m.servedModelName !== m.source ? ` as ${m.servedModelName}` : ""
        }`,
      );
    }
    const register: RegisterReport = { conflict: plan.conflict, containerPath, models };
    return { report: { register } };
  },
};
