/**
 * `deno task backends`: the backends this machine can run, with what each
 * states about itself (devices, limits, ops it lacks, conv lowering).
 * A backend that is unavailable here is listed with the reason.
 *
 * @module
 */

import { type BackendCapabilities, backendFactories, loadNativeBackend, missingOps } from "../backends/mod.ts";

function caps(c: BackendCapabilities): string[] {
  // Winograd stages are only emitted for backends that ask for them.
  const missing = missingOps(c).filter((o) => c.conv.kind === "winograd" || !o.startsWith("wino_"));
  return [
    `conv: ${
      c.conv.kind === "winograd" ? `Winograd F(${c.conv.tiles.join("|")},3) by cost model, else direct` : "direct"
    }`,
    `alignment ${c.alignment} B, memory ${
      Number.isFinite(c.memoryBytes) ? `${(c.memoryBytes / 2 ** 30).toFixed(1)} GiB` : "not stated"
    }${c.deviceMemory ? " (device)" : " (host)"}${
      Number.isFinite(c.maxTensorBytes) ? `, largest tensor ${(c.maxTensorBytes / 2 ** 20).toFixed(0)} MiB` : ""
    }${Number.isFinite(c.maxBufferBytes) ? `, largest buffer ${(c.maxBufferBytes / 2 ** 20).toFixed(0)} MiB` : ""}`,
    `dtypes ${[...c.dtypes].join(", ")}`,
    missing.length ? `ops on the CPU fallback: ${missing.join(", ")}` : "runs every op",
  ];
}

/** Lists the backends; returns the exit code (0 even when only the CPU is available). */
export async function main(): Promise<number> {
  const out: string[] = [];
  try {
    const cpu = await loadNativeBackend("cpu");
    const i = cpu.info;
    out.push(`cpu: available — ${i.isa} (${i.isas.join(", ")}), ${i.threads} threads`);
    const bf16 = (i.bf16_units as string[] | undefined) ?? [];
    out.push(
      `    precision bf16 (--precision bf16): ${
        bf16.length
          ? `usable, on ${bf16.join(" and ")} (${bf16[0]} by default)`
          : "not usable (no AVX512-BF16 / AMX-BF16)"
      }`,
    );
    for (const l of caps(cpu.capabilities)) out.push(`    ${l}`);
  } catch (e) {
    out.push(`cpu: unavailable — ${(e as Error).message}`);
  }
  for (const f of await backendFactories()) {
    try {
      const facts = f.describe ? await f.describe() : {};
      const be = await f.create({});
      out.push(`${f.name}: available — ${f.description ?? ""}`);
      for (const [k, v] of Object.entries(facts)) out.push(`    ${k}: ${v}`);
      for (const l of caps(be.capabilities)) out.push(`    ${l}`);
    } catch (e) {
      out.push(`${f.name}: unavailable — ${(e as Error).message}`);
    }
  }
  console.log(out.join("\n"));
  return 0;
}

if (import.meta.main) Deno.exit(await main());
