/** The one WeightFile implementation every reader returns: a tensor table plus per-tensor problems. */
import { MissingTensorError, UnsupportedDtypeError, type WeightFileError } from "./errors.ts";
import {
  isLoadable,
  type LoadableTensor,
  type MetadataValue,
  type TensorInfo,
  type WeightFile,
  type WeightFormat,
} from "./types.ts";

export interface TableInit {
  path: string;
  format: WeightFormat;
  tensors: Map<string, TensorInfo>;
  metadata?: Record<string, MetadataValue>;
  /** Errors to raise when a tensor is requested (non-contiguous, fused, ...). */
  problems?: Map<string, () => WeightFileError>;
  /** Tensors stored as row blocks of separate tensors (diffusers q/k/v of a fused ldm in_proj). */
  fused?: Map<string, TensorInfo[]>;
  /** Builds the error for a tensor whose dtype is not loadable (formats word it differently). */
  dtypeError?: (t: TensorInfo) => WeightFileError;
  /** Checks a tensor's data the first time it is requested (GGUF: quantized blocks' scales); throws if bad. */
  verify?: (t: TensorInfo) => void;
}

/** A WeightFile over an in-memory tensor table. */
export class TensorTable implements WeightFile {
  readonly path: string;
  readonly format: WeightFormat;
  readonly metadata: Readonly<Record<string, MetadataValue>>;
  private table: Map<string, TensorInfo>;
  private problems: Map<string, () => WeightFileError>;
  private dtypeError: (t: TensorInfo) => WeightFileError;
  private fused: Map<string, TensorInfo[]>;
  private verify?: (t: TensorInfo) => void;
  private verified = new Set<string>();

  constructor(init: TableInit) {
    this.path = init.path;
    this.format = init.format;
    this.table = init.tensors;
    this.metadata = init.metadata ?? {};
    this.problems = init.problems ?? new Map();
    this.fused = init.fused ?? new Map();
    this.verify = init.verify;
    this.dtypeError = init.dtypeError ??
      ((t) => new UnsupportedDtypeError(this.path, t.name, t.fileDType ?? t.dtype.toUpperCase()));
  }

  get tensors(): ReadonlyMap<string, TensorInfo> {
    return this.table;
  }

  has(name: string): boolean {
    return this.table.has(name) || this.problems.has(name);
  }

  get(name: string): LoadableTensor {
    const problem = this.problems.get(name);
    if (problem) throw problem();
    const t = this.table.get(name);
    if (!t) throw new MissingTensorError(this.path, name, closestName(name, this.table.keys()));
    if (!isLoadable(t.dtype)) throw this.dtypeError(t);
    if (this.verify && !this.verified.has(name)) {
      this.verify(t);
      this.verified.add(name);
    }
    return t as LoadableTensor;
  }

  /** The row blocks of a tensor stored in pieces, or undefined if it is stored whole (or absent). */
  fusedParts(name: string): readonly TensorInfo[] | undefined {
    return this.fused.get(name);
  }

  close(): void {
    this.table = new Map();
    this.problems = new Map();
    this.fused = new Map();
  }
}

/** The name in `names` nearest to `name` (edit distance), if reasonably near. */
export function closestName(name: string, names: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of names) {
    if (Math.abs(c.length - name.length) >= bestD) continue;
    const d = editDistance(name, c, bestD);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(3, Math.floor(name.length / 3)) ? best : undefined;
}

/** Levenshtein distance, giving up (returning `limit`) once every path exceeds `limit`. */
function editDistance(a: string, b: string, limit: number): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      if (v < rowMin) rowMin = v;
    }
    if (rowMin >= limit) return limit;
    prev = cur;
  }
  return prev[b.length];
}
