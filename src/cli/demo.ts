/**
 * `demo`: build a demo bundle (busybox stand-ins named like Cortex's images) in a throwaway
 * directory and run the real `install` on it, end to end, against the real engine. By default
 * a Cortex 0.2 demo (`<dir>/0.2`: a 0.2 Admin-UI bundle, root .env, generated secrets, the first
 * admin from a generated password file, Compose v2); `--release 0.1` runs the Cortex 0.1 demo
 * (`<dir>/0.1`: a script package, backend/.env).
 */
import { join } from "node:path";
import type { Context } from "../context.ts";
import { buildDemo, ensureEngine } from "../demo.ts";
import { buildDemo02 } from "../demo02.ts";
import { stopStack } from "../host/stack.ts";
import { readPasswordFile } from "../host/admin.ts";
import { runInstall } from "../steps/install.ts";
import { type InstallOptions, installOptions } from "../steps/types.ts";
import { COMPOSE_PROD, DEFAULT_DEMO_DIR, DEFAULT_DEMO_RELEASE, overridePath } from "../layout.ts";
import { ExitCode, UsageError } from "../errors.ts";
import { absPath } from "./paths.ts";
import { parseComposeChoice, parseWaitTimeout, renderReport } from "./install.ts";
import type { CommandHandler } from "./handler.ts";
import { str } from "./flags.ts";

/** What the demo of one release line prepared: the install's inputs. */
interface Prepared {
  options: InstallOptions;
  project: string;
  notes: string[];
}

async function prepare01(ctx: Context, dir: string, o: Partial<InstallOptions>): Promise<Prepared> {
  const demo = await buildDemo(ctx, dir);
  const composeFile = `${demo.cortexDir}/${COMPOSE_PROD}`;
  return {
    project: "cortex-demo",
    notes: [],
    options: installOptions({
      ...o,
      bundleDir: demo.bundleDir,
      cortexDir: demo.cortexDir,
      composeFile,
      project: "cortex-demo",
      modelsDir: demo.modelsDir,
      hfCacheDir: demo.hfCacheDir,
      stateDir: demo.stateDir,
      manifestPath: demo.manifestPath,
    }),
  };
}

async function prepare02(
  ctx: Context,
  dir: string,
  o: Partial<InstallOptions>,
  passwordFile: string | undefined,
): Promise<Prepared> {
  const demo = await buildDemo02(ctx, dir);
  const file = passwordFile ?? demo.passwordFile;
  const pw = await readPasswordFile(file);
  if (pw.warning) ctx.log.warn(pw.warning);
  return {
    project: "cortex-demo-02",
    notes: [
      `The first admin's password is in ${file} (never printed; cortex-install wrote it to the ` +
      `root .env, mode 0600, with the generated secrets).`,
    ],
    options: installOptions({
      ...o,
      bundleDir: demo.bundleDir,
      cortexDir: demo.cortexDir,
      composeFile: `${demo.cortexDir}/${COMPOSE_PROD}`,
      project: "cortex-demo-02",
      modelsDir: demo.modelsDir,
      hfCacheDir: demo.hfCacheDir,
      stateDir: demo.stateDir,
      manifestPath: demo.manifestPath,
      admin: { passwordFromFile: pw.password },
      // The demo's gateway is a busybox stand-in with no bundles API to register models with.
      skipRegister: true,
    }),
  };
}

export const demoCommand: CommandHandler = async (ctx, f) => {
  const release = str(f.release) ?? DEFAULT_DEMO_RELEASE;
  if (release !== "0.2" && release !== "0.1") {
    throw new UsageError(`--release must be 0.2 or 0.1, not "${release}"`);
  }
  const dir = join(absPath(ctx, str(f.dir) ?? DEFAULT_DEMO_DIR), release);
  await ensureEngine(ctx);
  const common: Partial<InstallOptions> = {
    waitTimeoutSec: parseWaitTimeout(str(f["wait-timeout"])),
    compose: parseComposeChoice(str(f.compose)),
    argv: Deno.args,
  };
  const passwordFile = str(f["admin-password-file"]);
  if (passwordFile && release === "0.1") {
    throw new UsageError("--admin-password-file is for the Cortex 0.2 demo (--release 0.2)");
  }
  const p = release === "0.1"
    ? await prepare01(ctx, dir, common)
    : await prepare02(ctx, dir, common, passwordFile && absPath(ctx, passwordFile));
  const report = await runInstall(ctx, p.options);
  const lines = [renderReport(report)];
  let settings = "";
  for (const url of report.urls ?? []) {
    if (!url.endsWith("/health")) continue;
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
  const o = p.options;
  lines.push(
    "",
    ...p.notes,
    `Demo files: ${dir} (bundle, Cortex dir, models, state; journal and audit log in ${o.stateDir})`,
    `Run it again: nothing is loaded, copied or written; only the stopped stack is started again.`,
    `Status: deno run -A main.ts status --state-dir ${o.stateDir}`,
  );
  if (f.keep !== true) {
    await stopStack(ctx, {
      cortexDir: o.cortexDir,
      files: [o.composeFile, overridePath(o.composeFile)],
      project: p.project,
      profiles: report.plan?.profiles ?? [],
      composeChoice: o.compose,
    });
    lines.push("Stopped the demo stack (pass --keep to leave it running).");
  }
  return {
    exitCode: ExitCode.Ok,
    report: { ...report, command: "demo", release, dir } as unknown as Record<string, unknown>,
    human: lines.join("\n"),
  };
};
