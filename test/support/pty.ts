/**
 * Runs the CLI on a pseudo-terminal (`script -qec`, util-linux) and answers its questions as a
 * person would: each answer is typed once its question shows, a key per write (dax reads one key
 * per read()), a beat after the prompt switched the terminal to raw mode. Returns everything the
 * terminal showed (stdout and stderr), so a test can assert what was echoed and what was not.
 */
import { join } from "node:path";
import { assert } from "./assert.ts";
import { REPO_ROOT } from "./fixtures.ts";

export interface PtyResult {
  code: number;
  /** What the terminal showed, then the process's own stderr. */
  output: string;
}

/**
 * `deno run -A main.ts <args>` on a pseudo-terminal of 120x40. `answers` are [text that shows
 * the question, keys to type], in the order the questions come; a question that never comes
 * fails the test. Killed after `timeoutMs`.
 */
export async function runOnPty(
  args: string[],
  answers: [question: string, keys: string[]][],
  o: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<PtyResult> {
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  // A pseudo-terminal made by `script` has no size unless told: dax draws nothing at 0 columns.
  const cmd = "stty cols 120 rows 40; " +
    [Deno.execPath(), "run", "-A", join(REPO_ROOT, "main.ts"), ...args].map(q).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qec", cmd, "/dev/null"],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", TERM: "xterm", ...o.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  let output = "";
  let answered = 0;
  let mark = 0;
  const dec = new TextDecoder();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, o.timeoutMs ?? 90_000);
  const errText = new Response(child.stderr).text();
  let typing = Promise.resolve();
  for await (const chunk of child.stdout) {
    output += dec.decode(chunk, { stream: true });
    // Only the text after the last answer counts: a question asked twice must show twice.
    while (answered < answers.length && output.slice(mark).includes(answers[answered][0])) {
      const keys = answers[answered++][1];
      mark = output.length;
      typing = typing.then(async () => {
        for (const k of keys) {
          await new Promise((r) => setTimeout(r, 300));
          await writer.write(new TextEncoder().encode(k)).catch(() => {});
        }
      });
    }
  }
  clearTimeout(timer);
  const status = await child.status;
  await typing;
  await writer.close().catch(() => {});
  output += await errText;
  assert(answered === answers.length, `a question never came:\n${output}`);
  return { code: status.code, output };
}
