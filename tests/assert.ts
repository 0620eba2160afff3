/**
 * The assertions sdflow's tests use (node:assert underneath; JSR's @std/assert is not reachable
 * here), with @std/assert's names and meaning, plus closeness checks with stated tolerances.
 *
 * @example
 * ```ts
 * assertEquals([1, 2], [1, 2]);
 * assertClose("out", got, want, 1e-5, 1e-6);
 * ```
 */
import { AssertionError, deepStrictEqual, match, ok } from "node:assert/strict";

export { AssertionError };

export function assert(cond: unknown, msg?: string): asserts cond {
  ok(cond, msg);
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  match(actual, re, msg);
}

export function assertInstanceOf<T>(v: unknown, cls: abstract new (...a: never[]) => T, msg?: string): asserts v is T {
  if (!(v instanceof cls)) {
    throw new AssertionError({
      message: msg ?? `expected ${cls.name}, got ${v instanceof Error ? `${v.name}: ${v.message}` : String(v)}`,
    });
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E> = abstract new (...a: any[]) => E;

function checkThrown<E extends Error>(e: unknown, cls: ErrorClass<E>, includes?: string): E {
  if (!(e instanceof cls)) {
    throw new AssertionError({ message: `expected ${cls.name}, got ${(e as Error)?.stack ?? e}` });
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    throw new AssertionError({ message: `expected a message containing "${includes}", got "${e.message}"` });
  }
  return e;
}

/** Asserts `fn` throws an instance of `cls` (whose message contains `includes`, when given); returns it. */
export function assertThrows<E extends Error>(fn: () => unknown, cls: ErrorClass<E>, includes?: string): E {
  try {
    fn();
  } catch (e) {
    return checkThrown(e, cls, includes);
  }
  throw new AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** Asserts `fn` rejects with an instance of `cls` (whose message contains `includes`, when given); returns it. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return checkThrown(e, cls, includes);
  }
  throw new AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** Largest |got - want| / (atol + rtol * |want|); <= 1 passes. NaN/inf must match exactly. */
export function errorRatio(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number): number {
  if (got.length !== want.length) throw new AssertionError({ message: `length ${got.length} != ${want.length}` });
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (!Object.is(g, w) && !(Number.isNaN(g) && Number.isNaN(w))) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(g - w) / (atol + rtol * Math.abs(w)));
  }
  return worst;
}

/** Asserts every |got - want| <= atol + rtol * |want|; the failure names the worst element. */
export function assertClose(
  what: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rtol: number,
  atol: number,
): void {
  const r = errorRatio(got, want, rtol, atol);
  if (r <= 1) return;
  let wi = 0, wr = -1;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (atol + rtol * Math.abs(want[i]));
    if (!(e <= wr)) {
      wr = e;
      wi = i;
    }
  }
  throw new AssertionError({
    message: `${what}: element ${wi} got ${got[wi]}, want ${want[wi]} (error ${
      r.toPrecision(3)
    }x the bound rtol ${rtol} atol ${atol})`,
  });
}

/**
 * Asserts max |got - want| <= atol + rtol * max |want| (an error bound relative to the tensor's
 * scale, for whole network outputs); returns the max |error|.
 */
export function assertMaxAbsError(
  what: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  atol: number,
  rtol: number,
): number {
  if (got.length !== want.length) {
    throw new AssertionError({ message: `${what}: ${got.length} values, reference has ${want.length}` });
  }
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= maxErr)) maxErr = Number.isNaN(e) ? Infinity : e;
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  const bound = atol + rtol * maxRef;
  if (!(maxErr <= bound)) {
    throw new AssertionError({ message: `${what}: max |error| ${maxErr} exceeds ${bound} (max |ref| ${maxRef})` });
  }
  return maxErr;
}
