/**
 * One handler per command: resolve inputs, call the steps, shape the report. The heavy commands'
 * modules (install, state, demo, doctor: dax, compose, the steps) are imported when their command
 * runs, so `load` and `verify` start without them (bench/ suite: start-up counts in every run).
 */
import { loadReleasePolicies } from "../bundle/release.ts";
import { formatName, readBundle } from "../bundle/read.ts";
import type { Bundle } from "../bundle/types.ts";
import { verifyBundle } from "../bundle/verify.ts";
import { loadImages } from "../images/load.ts";
import { ExitCode } from "../errors.ts";
import { absPath, locateBundle } from "./paths.ts";
import type { CommandHandler } from "./handler.ts";
import { str } from "./flags.ts";

/** The bundle as the reports show it: where, which format, which release line. */
function bundleSummary(b: Bundle) {
  return {
    dir: b.dir,
    format: b.format,
    formatName: formatName(b.format),
    ...(b.cortexVersion !== undefined ? { cortexVersion: b.cortexVersion } : {}),
    ...(b.line !== undefined ? { line: b.line } : {}),
  };
}

/** The human line about files no checksum covers (0.2), or nothing. */
export function uncoveredLine(uncovered: readonly string[] | undefined): string[] {
  if (!uncovered || uncovered.length === 0) return [];
  return [
    `note: not covered by any checksum (Cortex does not list them), so trusted for nothing: ${
      uncovered.join(", ")
    }`,
  ];
}

const readPolicies = (ctx: Parameters<CommandHandler>[0], f: Parameters<CommandHandler>[1]) =>
  loadReleasePolicies(str(f.manifest) && absPath(ctx, str(f.manifest)!));

const verifyCommand: CommandHandler = async (ctx, f) => {
  const bundle = await readBundle(
    await locateBundle(ctx, str(f.bundle)),
    await readPolicies(ctx, f),
  );
  ctx.log.info(`Bundle ${bundle.dir}: ${formatName(bundle.format)}, ${bundle.files.length} files`);
  for (const w of bundle.warnings) ctx.log.warn(w);
  const report = await verifyBundle(ctx, bundle, { allowUnlisted: f["allow-unlisted"] === true });
  const lines = report.files.map((x) => `  ${x.verdict.padEnd(9)} ${x.path}`);
  const human = [
    `${report.ok ? "OK" : "FAILED"}: ${report.files.length} files checked in ${bundle.dir} (${
      formatName(bundle.format)
    })`,
    ...lines,
    ...uncoveredLine(report.uncovered),
    ...report.errors.map((e) => `error: ${e}`),
  ].join("\n");
  return {
    exitCode: report.ok ? ExitCode.Ok : ExitCode.Integrity,
    report: { command: "verify", bundle: bundleSummary(bundle), ...report },
    human,
  };
};

const loadCommand: CommandHandler = async (ctx, f) => {
  const bundle = await readBundle(
    await locateBundle(ctx, str(f.bundle)),
    await readPolicies(ctx, f),
  );
  ctx.log.info(
    `Bundle ${bundle.dir}: ${formatName(bundle.format)}, ${bundle.images.length} images`,
  );
  for (const w of bundle.warnings) ctx.log.warn(w);
  const report = await loadImages(ctx, bundle, {
    allowUnlisted: f["allow-unlisted"] === true,
    noVerify: f["no-verify"] === true,
  });
  const human = [
    `Loaded images from ${bundle.dir}:`,
    ...report.images.map((i) =>
      `  ${i.verdict.padEnd(16)} ${i.file}  ${(i.refs ?? []).join(", ")}`
    ),
  ].join("\n");
  return {
    exitCode: ExitCode.Ok, // a critical failure throws; an optional one is a warning
    report: { command: "load", bundle: bundleSummary(bundle), ...report },
    human,
  };
};

const doctorCommand: CommandHandler = async (ctx, f) => {
  const { runDoctor } = await import("../doctor/mod.ts");
  const { parseComposeChoice } = await import("./install.ts");
  const bundle = f.bundle
    ? await readBundle(await locateBundle(ctx, str(f.bundle)), await readPolicies(ctx, f))
    : undefined;
  if (bundle) ctx.log.info(`Bundle ${bundle.dir}: ${formatName(bundle.format)}`);
  const report = await runDoctor(ctx, {
    bundle,
    network: f.offline ? "offline" : f.online ? "online" : undefined,
    composeFile: str(f["compose-file"]) && absPath(ctx, str(f["compose-file"])!),
    composeProject: str(f["project-name"]),
    modelsDir: str(f["models-dir"]),
    hfCacheDir: str(f["hf-cache-dir"]),
    stateDir: str(f["state-dir"]),
    compose: parseComposeChoice(str(f.compose)),
  });
  const icon = { ok: "ok  ", warn: "warn", fail: "FAIL" } as const;
  const human = report.checks.map((c) =>
    `[${icon[c.status]}] ${c.title}: ${c.detail}${
      c.hint && c.status !== "ok" ? `\n       hint: ${c.hint}` : ""
    }`
  ).join("\n");
  return {
    exitCode: report.ok ? ExitCode.Ok : ExitCode.Preflight,
    report: { command: "doctor", ...(bundle ? { bundle: bundleSummary(bundle) } : {}), ...report },
    human,
  };
};

/** A handler whose module is imported when the command runs. */
const lazy = (load: () => Promise<CommandHandler>): CommandHandler => async (ctx, f) =>
  (await load())(ctx, f);

export const COMMAND_HANDLERS: Record<string, CommandHandler> = {
  install: lazy(async () => (await import("./install.ts")).installCommand),
  plan: lazy(async () => (await import("./install.ts")).planCommand),
  verify: verifyCommand,
  load: loadCommand,
  doctor: doctorCommand,
  status: lazy(async () => (await import("./state.ts")).statusCommand),
  rollback: lazy(async () => (await import("./state.ts")).rollbackCommand),
  demo: lazy(async () => (await import("./demo.ts")).demoCommand),
};
