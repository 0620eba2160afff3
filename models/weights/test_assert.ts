// Minimal assertions (jsr:@std/assert is unreachable here), same names and semantics for what the tests use.
import { AssertionError, deepStrictEqual, match, ok } from "node:assert";

export function assert(cond: unknown, msg?: string): asserts cond {
  ok(cond, msg);
}
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}
export function assertMatch(actual: string, re: RegExp): void {
  match(actual, re);
}
export function assertInstanceOf<T>(v: unknown, cls: abstract new (...a: never[]) => T): asserts v is T {
  if (!(v instanceof cls)) throw new AssertionError({ message: `expected ${cls.name}, got ${String(v)}` });
}
// deno-lint-ignore no-explicit-any
type Cls<E> = abstract new (...a: any[]) => E;
export function assertThrows<E extends Error>(fn: () => unknown, cls: Cls<E>): E {
  try {
    fn();
  } catch (e) {
    assertInstanceOf(e, cls);
    return e as E;
  }
  throw new AssertionError({ message: `expected ${cls.name} to be thrown` });
}
export async function assertRejects<E extends Error>(fn: () => Promise<unknown>, cls: Cls<E>): Promise<E> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof cls)) {
      throw new AssertionError({ message: `expected ${cls.name}, got ${(e as Error)?.stack ?? e}` });
    }
    return e as E;
  }
  throw new AssertionError({ message: `expected ${cls.name} to be thrown` });
}
