/**
 * A journey's command line: the world's default flags, then the step's own. A flag the step gives
 * replaces the default's (the CLI refuses a single-value flag given twice, as it should).
 */
export function mergeArgs(base: string[], extra: string[]): string[] {
  const given = new Set(
    extra.filter((a) => a.startsWith("--")).map((a) => a.split("=")[0]),
  );
  const out: string[] = [];
  for (let i = 0; i < base.length; i++) {
    const a = base[i];
    if (a.startsWith("--") && given.has(a.split("=")[0])) {
      const hasValue = !a.includes("=") && i + 1 < base.length && !base[i + 1].startsWith("--");
      if (hasValue) i++;
      continue;
    }
    out.push(a);
  }
  return [...out, ...extra];
}
