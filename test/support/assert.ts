/**
 * Small assertion helpers for tests (JSR's @std/assert is unreachable here).
 * Each throws an `AssertionError` with both values printed.
 */
import { inspect, isDeepStrictEqual } from "node:util";

export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

const show = (v: unknown) => inspect(v, { depth: 8, colors: false, breakLength: 100 });

/** Throws unless `cond` is truthy. */
export function assert(cond: unknown, msg = "Expected a truthy value"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

/** Deep, strict equality (Maps, Sets, arrays, plain objects, primitives). */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}values are not equal\n  actual:   ${show(actual)}\n  expected: ${
        show(expected)
      }`,
    );
  }
}

/** Deep inequality. */
export function assertNotEquals(actual: unknown, expected: unknown, msg?: string): void {
  if (isDeepStrictEqual(actual, expected)) {
    throw new AssertionError(`${msg ? msg + ": " : ""}expected a value other than ${show(actual)}`);
  }
}

/** Throws unless `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  if (!re.test(text)) {
    throw new AssertionError(`${msg ? msg + ": " : ""}${show(text)} does not match ${re}`);
  }
}

/** Throws if `text` matches `re`. */
export function assertNotMatch(text: string, re: RegExp, msg?: string): void {
  if (re.test(text)) {
    throw new AssertionError(`${msg ? msg + ": " : ""}${show(text)} matches ${re}`);
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

/**
 * Awaits `fn`, expects it to reject, optionally with an instance of `cls` whose message matches
 * `msgMatch` (a RegExp or a substring). Returns the error for further checks.
 */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  cls?: ErrorClass<E>,
  msgMatch?: RegExp | string,
): Promise<E> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new AssertionError("Expected the promise to reject, it resolved");
  checkError(err, cls, msgMatch);
  return err as E;
}

/** Like `assertRejects`, for synchronous functions. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: ErrorClass<E>,
  msgMatch?: RegExp | string,
): E {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new AssertionError("Expected the function to throw, it returned");
  checkError(err, cls, msgMatch);
  return err as E;
}

function checkError<E extends Error>(
  err: unknown,
  cls?: ErrorClass<E>,
  msgMatch?: RegExp | string,
): void {
  if (cls && !(err instanceof cls)) {
    throw new AssertionError(`Expected an error of class ${cls.name}, got ${show(err)}`);
  }
  if (msgMatch !== undefined) {
    const m = err instanceof Error ? err.message : String(err);
    const ok = typeof msgMatch === "string" ? m.includes(msgMatch) : msgMatch.test(m);
    if (!ok) {
      throw new AssertionError(`Error message ${show(m)} does not match ${show(msgMatch)}`);
    }
  }
}
