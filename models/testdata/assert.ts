/** Minimal assertions for model tests (node:assert underneath; JSR's std is not reachable here). */

import { deepStrictEqual, ok } from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}

export function assert(cond: unknown, msg?: string): asserts cond {
  ok(cond, msg);
}

/** Asserts `fn` throws an instance of `cls` whose message contains `includes`. */
export function assertThrows(fn: () => unknown, cls: abstract new (...a: never[]) => Error, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e instanceof Error ? e.name : e}: ${e}`);
    if (includes !== undefined && !e.message.includes(includes)) {
      throw new Error(`expected a message containing "${includes}", got "${e.message}"`);
    }
    return e;
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}
