/**
 * cortex-install: parse the command line, build one context, run the command, map the error to
 * an exit code. No business logic here (see src/cli/run.ts and src/steps/).
 */
import { runCli } from "./src/cli/run.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
