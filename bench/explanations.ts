/**
 * What limits a target that the suite shows missed, by `case/ratio` id (or case id), with the
 * measurement behind it. RESULTS.md prints these next to each missed target; update them with
 * the numbers of the run that is committed.
 */
export const EXPLANATIONS: Record<string, string> = {};
