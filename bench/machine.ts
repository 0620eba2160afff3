/**
 * The machine a benchmark ran on, from /proc (Linux): CPU model, logical CPUs, physical cores, the
 * vector extensions that matter to sdflow's kernels, and memory. Printed with every figure so a figure
 * never travels without its machine.
 */

export interface MachineInfo {
  readonly cpu: string;
  readonly logicalCpus: number;
  /** Distinct (physical id, core id) pairs; null when /proc/cpuinfo does not say. */
  readonly physicalCores: number | null;
  /** Of avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512_bf16, avx512_vnni: those the CPU has. */
  readonly isaFlags: readonly string[];
  readonly memoryBytes: number | null;
}

const ISA_FLAGS = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni"];

/** Reads /proc/cpuinfo and /proc/meminfo text (given, for tests) into a {@link MachineInfo}. */
export function parseMachine(cpuinfo: string, meminfo: string): MachineInfo {
  const blocks = cpuinfo.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  const field = (b: string, name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(b)?.[1].trim();
  const cores = new Set<string>();
  for (const b of blocks) {
    const phys = field(b, "physical id"), core = field(b, "core id");
    if (phys !== undefined && core !== undefined) cores.add(`${phys}/${core}`);
  }
  const flags = new Set((blocks[0] ? field(blocks[0], "flags") ?? "" : "").split(/\s+/));
  const mem = /^MemTotal:\s+(\d+)\s+kB/m.exec(meminfo);
  return {
    cpu: (blocks[0] && field(blocks[0], "model name")) || "unknown CPU",
    logicalCpus: blocks.length || navigator.hardwareConcurrency,
    physicalCores: cores.size || null,
    isaFlags: ISA_FLAGS.filter((f) => flags.has(f)),
    memoryBytes: mem ? Number(mem[1]) * 1024 : null,
  };
}

/** This machine; fields /proc cannot give are "unknown"/null. */
export function thisMachine(): MachineInfo {
  const read = (p: string) => {
    try {
      return Deno.readTextFileSync(p);
    } catch {
      return "";
    }
  };
  return parseMachine(read("/proc/cpuinfo"), read("/proc/meminfo"));
}

/** One line: `AMD EPYC 9R45 (2 logical CPUs, 2 cores), AVX-512 (f, bw, vl, bf16, vnni), 24.0 GiB`. */
export function describeMachine(m: MachineInfo): string {
  const cores = m.physicalCores === null ? "" : `, ${m.physicalCores} core${m.physicalCores === 1 ? "" : "s"}`;
  const avx512 = m.isaFlags.filter((f) => f.startsWith("avx512")).map((f) => f.replace(/^avx512_?/, ""));
  const isa = avx512.length
    ? `AVX-512 (${avx512.join(", ")})`
    : m.isaFlags.includes("avx2")
    ? `AVX2${m.isaFlags.includes("fma") ? " + FMA" : ""}`
    : "no AVX2";
  const mem = m.memoryBytes === null ? "" : `, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`;
  return `${m.cpu} (${m.logicalCpus} logical CPU${m.logicalCpus === 1 ? "" : "s"}${cores}), ${isa}${mem}`;
}
