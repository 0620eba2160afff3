/**
 * A restricted unpickler for PyTorch checkpoints. It interprets the pickle
 * opcodes a `torch.save` file uses and never runs anything: an import (GLOBAL /
 * STACK_GLOBAL) is accepted only from a short allow-list of names whose effect is
 * re-implemented here as plain data (dicts, tuples, tensor descriptors); any other
 * import is refused with UnsafePickleError before the next opcode is read.
 */
import { CorruptHeaderError, UnsafePickleError } from "./errors.ts";

/** A Python tuple (kept apart from lists so tensor shapes and persistent ids are recognisable). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** An allow-listed import (a storage type, dtype or class marker). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An inert stand-in for an allow-listed object we never need to understand (numpy scalars, callbacks). */
export class PyObject {
  state: unknown;
  constructor(readonly type: string, readonly args: unknown[]) {}
}

/** What `_rebuild_tensor_v2` was asked to build: a view of a storage. */
export class TensorRef {
  constructor(
    readonly storage: unknown,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

export interface UnpickleOptions {
  /** The file, for messages. */
  path: string;
  /** Resolves a persistent id (BINPERSID) — torch uses it for storages. */
  persistentLoad(pid: unknown): unknown;
}

type Callable = (args: unknown[]) => unknown;

const rebuildTensor: Callable = (a) => {
  const [storage, offset, size, stride] = a;
  const dims = (v: unknown): number[] | undefined => {
    const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
    return items?.every((d) => Number.isSafeInteger(d) && (d as number) >= 0) ? items as number[] : undefined;
  };
  const shape = dims(size);
  const strides = dims(stride);
  if (
    !Number.isSafeInteger(offset) || (offset as number) < 0 || !shape || !strides || shape.length !== strides.length
  ) {
    throw new Error("_rebuild_tensor_v2 called with invalid offset/size/stride");
  }
  return new TensorRef(storage, offset as number, shape, strides);
};

const inert = (type: string): Callable => (a) => new PyObject(type, a);

/** Allow-listed callables (applied by REDUCE/NEWOBJ) and markers (only referenced). */
const CALLABLES: Record<string, Callable> = {
  "collections.OrderedDict": (a) => toMap(a[0]),
  "builtins.dict": (a) => toMap(a[0]),
  "builtins.set": (a) => new Set(iter(a[0])),
  "__builtin__.set": (a) => new Set(iter(a[0])),
  "builtins.frozenset": (a) => new Set(iter(a[0])),
  "torch._utils._rebuild_tensor": rebuildTensor,
  "torch._utils._rebuild_tensor_v2": rebuildTensor,
  "torch._utils._rebuild_parameter": (a) => a[0],
  "torch._utils._rebuild_parameter_with_state": (a) => a[0],
  "torch.Size": (a) => new PyTuple([...iter(a[0])]),
  "_codecs.encode": (a) => {
    if (typeof a[0] !== "string" || !["latin1", "latin-1"].includes(String(a[1]))) {
      throw new Error("_codecs.encode is only accepted for latin1 byte strings");
    }
    return Uint8Array.from(a[0], (c) => c.charCodeAt(0) & 0xff);
  },
  "torch._tensor._rebuild_from_type_v2": (a) => {
    const [fn, , args] = a;
    if (!(fn instanceof PyGlobal) || !CALLABLES[fn.qualname]) {
      throw new Error("_rebuild_from_type_v2 of a non-callable");
    }
    return CALLABLES[fn.qualname](args instanceof PyTuple ? args.items : []);
  },
  "numpy.core.multiarray.scalar": inert("numpy.scalar"),
  "numpy._core.multiarray.scalar": inert("numpy.scalar"),
  "numpy.core.multiarray._reconstruct": inert("numpy.ndarray"),
  "numpy._core.multiarray._reconstruct": inert("numpy.ndarray"),
  "numpy.dtype": inert("numpy.dtype"),
  "numpy.ndarray": inert("numpy.ndarray"),
  "torch.device": inert("torch.device"),
  "torch.nn.modules.container.ParameterDict": inert("ParameterDict"),
  "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": inert("ModelCheckpoint"),
};

const STORAGES = [
  "FloatStorage",
  "HalfStorage",
  "BFloat16Storage",
  "DoubleStorage",
  "LongStorage",
  "IntStorage",
  "ShortStorage",
  "CharStorage",
  "ByteStorage",
  "BoolStorage",
  "ComplexFloatStorage",
  "ComplexDoubleStorage",
  "Float8_e4m3fnStorage",
  "Float8_e5m2Storage",
];
const MARKERS = new Set([
  ...STORAGES.map((s) => `torch.${s}`),
  ...["float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"].map((s) => `torch.${s}`),
  "torch.Tensor",
  "torch.nn.parameter.Parameter",
]);

/** Whether `module.name` may be imported by a checkpoint's pickle. */
export function isAllowedGlobal(module: string, name: string): boolean {
  const q = `${module}.${name}`;
  return q in CALLABLES || MARKERS.has(q);
}

function iter(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  if (v instanceof PyTuple) return v.items;
  if (v instanceof Set) return [...v];
  if (v instanceof Map) return [...v.keys()];
  throw new Error("expected an iterable argument");
}

function toMap(v: unknown): Map<unknown, unknown> {
  if (v instanceof Map) return new Map(v);
  const m = new Map<unknown, unknown>();
  for (const p of iter(v)) {
    const kv = p instanceof PyTuple ? p.items : Array.isArray(p) ? p : undefined;
    if (!kv || kv.length !== 2) throw new Error("OrderedDict argument is not a list of pairs");
    m.set(kv[0], kv[1]);
  }
  return m;
}

/** Interprets `data` (a whole pickle) with the allow-list; returns the unpickled value. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const { path } = opts;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8", { fatal: true });

  const fail = (msg: string): never => {
    throw new CorruptHeaderError(path, `${path}: pickle is malformed (${msg} at byte ${pos}); the file is corrupt`);
  };
  const need = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.length) fail(`${n} bytes needed, pickle too short`);
  };
  const u8 = () => (need(1), data[pos++]);
  const u16 = () => (need(2), pos += 2, dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), pos += 4, dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), pos += 4, dv.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(data.length)) fail("length beyond the pickle");
    return Number(v);
  };
  const bytes = (n: number) => (need(n), pos += n, data.subarray(pos - n, pos));
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail("unterminated text line");
    const s = latin1.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const str = (n: number) => {
    try {
      return utf8.decode(bytes(n));
    } catch {
      return fail("invalid UTF-8 string");
    }
  };
  const pop = () => (stack.length === 0 ? fail("stack underflow") : stack.pop());
  const top = () => (stack.length === 0 ? fail("stack underflow") : stack[stack.length - 1]);
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail("no MARK on the stack");
    stack = prev!;
    return items;
  };
  const signed = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const importGlobal = (module: string, name: string): PyGlobal => {
    if (!isAllowedGlobal(module, name)) {
      const q = `${module}.${name}`.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
      throw new UnsafePickleError(
        path,
        `refusing to load ${path}: pickle imports ${q}, which a tensor checkpoint never needs; ` +
          `if you trust its source, convert it to .safetensors with PyTorch and load that`,
      );
    }
    return new PyGlobal(module, name);
  };
  const call = (fn: unknown, args: unknown[]): unknown => {
    if (!(fn instanceof PyGlobal)) return fail("REDUCE of something that is not an allowed import");
    const f = CALLABLES[(fn as PyGlobal).qualname];
    if (!f) return fail(`${(fn as PyGlobal).qualname} is a marker, not a callable`);
    try {
      return f(args);
    } catch (e) {
      if (e instanceof CorruptHeaderError) throw e;
      return fail(`${(fn as PyGlobal).qualname}: ${(e as Error).message}`);
    }
  };
  const setItems = (target: unknown, kv: unknown[]) => {
    if (kv.length % 2) fail("odd number of items for SETITEMS");
    if (target instanceof Map) {
      for (let i = 0; i < kv.length; i += 2) target.set(kv[i], kv[i + 1]);
    } else if (!(target instanceof PyObject)) fail("SETITEM on a non-dict");
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (Array.isArray(target)) target.push(...items);
    else if (target instanceof Set) items.forEach((i) => target.add(i));
    else if (!(target instanceof PyObject)) fail("APPEND on a non-list");
  };

  while (true) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("unknown pickle protocol");
        break;
      case 0x95: // FRAME
        need(8);
        pos += 8;
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(signed(bytes(u8())));
        break;
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail("negative LONG4 length");
        stack.push(signed(bytes(n)));
        break;
      }
      case 0x49: { // INT (text)
        const s = line();
        stack.push(s === "01" ? true : s === "00" ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(Number.parseInt(line().replace(/L$/, ""), 10));
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number.parseFloat(line()));
        break;
      case 0x47: // BINFLOAT (big endian)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x54: // BINSTRING
        stack.push(latin1.decode(bytes(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x74: { // TUPLE (popMark swaps `stack`: take the items before touching it)
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case 0x6c: { // LIST
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x64: { // DICT
        const m = new Map();
        setItems(m, popMark());
        stack.push(m);
        break;
      }
      case 0x91: { // FROZENSET
        const items = popMark();
        stack.push(new Set(items));
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: // APPENDS
      case 0x90: { // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number.parseInt(line(), 10), top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: { // GET (text)
        const k = op === 0x68 ? u8() : op === 0x6a ? u32() : Number.parseInt(line(), 10);
        if (!memo.has(k)) fail(`memo key ${k} not found`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        stack.push(importGlobal(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL of non-strings");
        stack.push(importGlobal(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(args instanceof PyTuple)) fail("REDUCE arguments are not a tuple");
        stack.push(call(fn, (args as PyTuple).items));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!(args instanceof PyTuple)) fail("NEWOBJ arguments are not a tuple");
        stack.push(call(cls, (args as PyTuple).items));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        // Dict/tensor state (a state_dict's _metadata, requires_grad) carries nothing sdflow uses.
        break;
      }
      case 0x51: // BINPERSID
        stack.push(opts.persistentLoad(pop()));
        break;
      case 0x50: // PERSID (text)
        stack.push(opts.persistentLoad(line()));
        break;
      default:
        fail(`opcode 0x${op.toString(16)} is not used by tensor checkpoints`);
    }
  }
}
