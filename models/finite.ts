/**
 * Non-finite values (NaN, ±Infinity) in a network's output or a latent. Left alone they become
 * an all-black picture written with exit code 0; sdflow stops with this error instead.
 *
 * @example
 * ```ts
 * assertFinite(out, "the UNet's output");
 * ```
 */

/** A network output or latent holds NaN or ±Infinity. */
export class NonFiniteError extends Error {
  override name = "NonFiniteError";
  constructor(readonly what: string, readonly index: number, readonly value: number) {
    super(
      `${what} is not finite (${value} at element ${index}): the weights or the inputs overflow or are corrupt ` +
        `(an f16 checkpoint whose activations exceed 65504, extreme prompt weights, a broken file); ` +
        `stopping instead of writing a black picture`,
    );
  }
}

/** The index of the first NaN or ±Infinity in `data`, or -1. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) {
    // x - x is 0 for every finite x and NaN for NaN and ±Infinity: one subtraction per element.
    if (data[i] - data[i] !== 0) return i;
  }
  return -1;
}

/** Throws {@link NonFiniteError} naming `what` when `data` holds NaN or ±Infinity. */
export function assertFinite(data: ArrayLike<number>, what: string): void {
  const i = firstNonFinite(data);
  if (i >= 0) throw new NonFiniteError(what, i, data[i]);
}
