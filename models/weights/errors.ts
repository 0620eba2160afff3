/**
 * Errors raised while reading weight files. Every message is one line that says
 * what is wrong with which file (and tensor), and what to do about it.
 *
 * @example
 * ```ts
 * try {
 *   file.get("model.diffusion_model.out.2.weight");
 * } catch (e) {
 *   if (e instanceof MissingTensorError) console.error(e.message);
 * }
 * ```
 */

/** Base class: something is wrong with the weight file at `path`. */
export class WeightFileError extends Error {
  override name = "WeightFileError";
  constructor(readonly path: string, message: string) {
    super(message);
  }
}

/** The file ends before the data its header describes (incomplete download or copy). */
export class TruncatedFileError extends WeightFileError {
  override name = "TruncatedFileError";
}

/** The file's header or directory is malformed or inconsistent with itself. */
export class CorruptHeaderError extends WeightFileError {
  override name = "CorruptHeaderError";
}

/** A pickle (.ckpt/.pt/.pth/.bin) imports something a tensor checkpoint never needs. */
export class UnsafePickleError extends WeightFileError {
  override name = "UnsafePickleError";
}

/** A requested tensor has an element type sdflow cannot load. */
export class UnsupportedDtypeError extends WeightFileError {
  override name = "UnsupportedDtypeError";
  constructor(path: string, readonly tensor: string, readonly dtype: string, message?: string) {
    super(
      path,
      message ??
        `unsupported dtype ${dtype} for tensor ${tensor} in ${path}: sdflow loads F32, F16 and BF16 weights; ` +
          `convert the file or do not request this tensor`,
    );
  }
}

/** A requested tensor is not contiguous in its storage (strided views cannot be memory-mapped). */
export class UnsupportedLayoutError extends WeightFileError {
  override name = "UnsupportedLayoutError";
}

/** The file is not in a format sdflow reads (or in a legacy variant of one). */
export class UnsupportedFormatError extends WeightFileError {
  override name = "UnsupportedFormatError";
}

/** A requested tensor is not in the file. */
export class MissingTensorError extends WeightFileError {
  override name = "MissingTensorError";
  constructor(path: string, readonly tensor: string, readonly suggestion?: string) {
    super(
      path,
      `tensor ${tensor} is not in ${path}` +
        (suggestion ? ` (did you mean ${suggestion}?)` : "") +
        `: check that the file is the model you meant to load`,
    );
  }
}
