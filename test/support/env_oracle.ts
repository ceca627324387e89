/**
 * Real readers of a `.env` file, for property tests: `bash .` (Cortex's scripts source the file)
 * and Compose v2's own `.env` parser (`docker compose config`). Each returns, per key, the value
 * the reader sees, or undefined when the key is unset.
 */

async function withFile<T>(text: string, f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "cit-envoracle-" });
  try {
    await Deno.writeTextFile(`${dir}/.env`, text);
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * What `bash` sees after `. .env` for each key. Runs with an empty environment and PATH, in a
 * scratch folder, so a stray command line of a mutated file runs nothing.
 */
export function bashRead(text: string, keys: string[]): Promise<(string | undefined)[]> {
  return withFile(text, async (dir) => {
    const script = '. ./.env >/dev/null 2>&1; for k in "$@"; do if [ -n "${!k+x}" ]; then ' +
      'printf "1%s\\0" "${!k}"; else printf "0\\0"; fi; done';
    const out = await new Deno.Command("/bin/bash", {
      args: ["--noprofile", "--norc", "-c", script, "bash", ...keys],
      cwd: dir,
      env: { PATH: "/nonexistent" },
      clearEnv: true,
      stdout: "piped",
      stderr: "null",
    }).output();
    const parts = new TextDecoder().decode(out.stdout).split("\0").slice(0, keys.length);
    return keys.map((_, i) => parts[i]?.startsWith("1") ? parts[i].slice(1) : undefined);
  });
}

/** Whether `docker compose` (v2) is on this machine. */
export async function hasComposeV2(): Promise<boolean> {
  try {
    const r = await new Deno.Command("docker", {
      args: ["compose", "version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return r.success;
  } catch {
    return false;
  }
}

/** What Compose v2 interpolates `${KEY}` to from this `.env` (undefined: unset). */
export function composeRead(text: string, keys: string[]): Promise<(string | undefined)[]> {
  return withFile(text, async (dir) => {
    const UNSET = "\u0000unset";
    const env = keys.map((k) => `      ${k}: "\${${k}-<cit-unset>}"`).join("\n");
    await Deno.writeTextFile(
      `${dir}/c.yml`,
      `services:\n  s:\n    image: busybox\n    environment:\n${env}\n`,
    );
    const out = await new Deno.Command("docker", {
      args: [
        "compose",
        "-p",
        "citenvoracle",
        "-f",
        "c.yml",
        "--env-file",
        ".env",
        "config",
        "--format",
        "json",
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`docker compose config failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    const got = JSON.parse(new TextDecoder().decode(out.stdout)).services.s.environment as Record<
      string,
      string
    >;
    // `config` prints a literal `$` as `$$`.
    return keys.map((k) => (got[k] === "<cit-unset>" ? UNSET : got[k])).map((v) =>
      v === UNSET ? undefined : v.replaceAll("$$", "$")
    );
  });
}

/**
 * One bash run: when bash parses both `before` and `after` (`bash -n`) and sources `before` to
 * its end, what `. after` sets for each key; undefined otherwise (a file bash cannot read says
 * nothing about what an editor wrote into it).
 */
export function bashReadAfter(
  before: string,
  after: string,
  keys: string[],
): Promise<(string | undefined)[] | undefined> {
  return withFile(after, async (dir) => {
    await Deno.writeTextFile(`${dir}/before`, before);
    // `before` must also source to its end (a `${X:?}` line ends a non-interactive shell).
    const script = "/bin/bash -n ./before >/dev/null 2>&1 || exit 3; " +
      "/bin/bash -n ./.env >/dev/null 2>&1 || exit 3; " +
      '[ "$(. ./before >/dev/null 2>&1; printf done)" = done ] || exit 3; ' +
      '. ./.env >/dev/null 2>&1; for k in "$@"; do if [ -n "${!k+x}" ]; then ' +
      'printf "1%s\\0" "${!k}"; else printf "0\\0"; fi; done';
    const out = await new Deno.Command("/bin/bash", {
      args: ["--noprofile", "--norc", "-c", script, "bash", ...keys],
      cwd: dir,
      env: { PATH: "/nonexistent" },
      clearEnv: true,
      stdout: "piped",
      stderr: "null",
    }).output();
    if (out.code === 3) return undefined;
    const parts = new TextDecoder().decode(out.stdout).split("\0").slice(0, keys.length);
    return keys.map((_, i) => parts[i]?.startsWith("1") ? parts[i].slice(1) : undefined);
  });
}
