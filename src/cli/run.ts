/**
 * The CLI layer: the only place that prints reports. Steps return typed results; this maps them
 * to stdout (JSON or human text) and errors to exit codes.
 */
import { createContext } from "../context.ts";
import { ExitCode, InstallError, InterruptedError, printable, UsageError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { commandHelp, globalHelp, parseCommandLine, type Parsed } from "./flags.ts";

const enc = new TextEncoder();
const out = (s: string) => Deno.stdout.writeSync(enc.encode(s));
const err = (s: string) => Deno.stderr.writeSync(enc.encode(s));

/** Runs the CLI with these arguments and returns the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  let parsed: Parsed;
  try {
    const p = parseCommandLine(argv);
    if ("global" in p) {
      out(p.global === "version" ? `cortex-install ${VERSION}\n` : globalHelp(VERSION));
      return ExitCode.Ok;
    }
    parsed = p;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`error: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ""}`);
      return ExitCode.Usage;
    }
    throw e;
  }
  if (parsed.values.help) {
    out(commandHelp(parsed.command));
    return ExitCode.Ok;
  }

  const json = parsed.values.json === true;
  const aborter = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) {
      err("\ninterrupted twice: exiting without cleanup; re-run to resume\n");
      Deno.exit(ExitCode.Interrupted);
    }
    err("\ninterrupted: stopping the current step and cleaning up (Ctrl-C again to force)\n");
    aborter.abort(new InterruptedError());
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const ctx = createContext({
    json,
    verbose: parsed.values.verbose === true,
    signal: aborter.signal,
  });
  const started = performance.now();
  try {
    // Imported here: `--help` and `--version` need none of the commands' modules.
    const { COMMAND_HANDLERS } = await import("./commands.ts");
    const handler = COMMAND_HANDLERS[parsed.command.name];
    const outcome = await handler(ctx, parsed.values);
    ctx.progress.finish();
    if (json) {
      out(JSON.stringify({ ...outcome.report, exitCode: outcome.exitCode }, null, 2) + "\n");
    } else if (outcome.human) {
      out(outcome.human.endsWith("\n") ? outcome.human : outcome.human + "\n");
    }
    return outcome.exitCode;
  } catch (e) {
    ctx.progress.clear();
    const code = errorExitCode(e, aborter.signal);
    if (code === undefined) throw e; // a bug: Deno prints the stack trace and exits 1
    // An error that is not ours, raised because the run was interrupted, is the interruption.
    const error = describeError(
      code === ExitCode.Interrupted && !(e instanceof InterruptedError) &&
        !(e instanceof InstallError)
        ? new InterruptedError(String((e as Error)?.message ?? e))
        : e,
    );
    // Messages may quote names from files: no control character reaches the terminal.
    const safe = (s: string) => printable(s, { keepNewlines: true });
    err(`error: ${safe(error.message)}\n`);
    if (error.detail) err(`${safe(error.detail).replace(/^/gm, "  | ")}\n`);
    if (error.hint) err(`hint: ${safe(error.hint)}\n`);
    if (json) {
      out(
        JSON.stringify(
          {
            command: parsed.command.name,
            ok: false,
            error,
            durationMs: Math.round(performance.now() - started),
            exitCode: code,
          },
          null,
          2,
        ) + "\n",
      );
    }
    return code;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

function errorExitCode(e: unknown, signal: AbortSignal): number | undefined {
  if (e instanceof InstallError) return e.exitCode;
  if (e instanceof UsageError) return ExitCode.Usage;
  if (e instanceof InterruptedError) return ExitCode.Interrupted;
  if (signal.aborted) return ExitCode.Interrupted;
  return undefined;
}

/** The printable parts of an error (no stack); an error of no known kind is "internal". */
export function describeError(
  e: unknown,
): { kind: string; step?: string; message: string; hint?: string; detail?: string } {
  if (e instanceof InstallError) {
    return { kind: "install", step: e.step, message: e.message, hint: e.hint, detail: e.detail };
  }
  if (e instanceof UsageError) return { kind: "usage", message: e.message, hint: e.hint };
  if (e instanceof InterruptedError) {
    return { kind: "interrupted", message: e.message, hint: "Re-run the same command to resume." };
  }
  return { kind: "internal", message: String((e as Error)?.message ?? e) };
}
