/**
 * `demo`: build the demo bundle (busybox stand-ins named like Cortex's images) in a throwaway
 * directory and run the real `install` on it, end to end, against the real engine.
 */
import { buildDemo, ensureEngine } from "../demo.ts";
import { stopStack } from "../host/stack.ts";
import { runInstall } from "../steps/install.ts";
import { installOptions } from "../steps/types.ts";
import { COMPOSE_PROD, DEFAULT_DEMO_DIR, overridePath } from "../layout.ts";
import { ExitCode } from "../errors.ts";
import { absPath } from "./paths.ts";
import { parseWaitTimeout, renderReport } from "./install.ts";
import type { CommandHandler } from "./handler.ts";
import { str } from "./flags.ts";

export const demoCommand: CommandHandler = async (ctx, f) => {
  const dir = absPath(ctx, str(f.dir) ?? DEFAULT_DEMO_DIR);
  await ensureEngine(ctx);
  const demo = await buildDemo(ctx, dir);
  const composeFile = `${demo.cortexDir}/${COMPOSE_PROD}`;
  const project = "cortex-demo";
  const report = await runInstall(
    ctx,
    installOptions({
      bundleDir: demo.bundleDir,
      cortexDir: demo.cortexDir,
      composeFile,
      project,
      modelsDir: demo.modelsDir,
      hfCacheDir: demo.hfCacheDir,
      stateDir: demo.stateDir,
      manifestPath: demo.manifestPath,
      waitTimeoutSec: parseWaitTimeout(str(f["wait-timeout"])),
      argv: Deno.args,
    }),
  );
  const lines = [renderReport(report)];
  let settings = "";
  for (const url of report.urls ?? []) {
    try {
      const r = await fetch(url.replace(/\/health$/, "/settings.txt"), {
        signal: AbortSignal.timeout(3000),
      });
      settings = r.ok ? (await r.text()).trim() : "";
    } catch { /* the demo gateway serves it; a real one does not */ }
  }
  if (settings) {
    lines.push(
      "  the gateway container sees:",
      ...settings.split("\n").map((s) => `    ${s}`),
    );
  }
  lines.push(
    "",
    `Demo files: ${dir} (bundle, Cortex dir, models, state; journal and audit log in ${demo.stateDir})`,
    `Run it again: nothing is loaded, copied or written; only the stopped stack is started again.`,
    `Status: deno run -A main.ts status --state-dir ${demo.stateDir}`,
  );
  if (f.keep !== true) {
    await stopStack(ctx, {
      cortexDir: demo.cortexDir,
      files: [composeFile, overridePath(composeFile)],
      project,
      profiles: report.plan?.profiles ?? [],
    });
    lines.push("Stopped the demo stack (pass --keep to leave it running).");
  }
  return {
    exitCode: ExitCode.Ok,
    report: { ...report, command: "demo", dir } as unknown as Record<string, unknown>,
    human: lines.join("\n"),
  };
};
