/**
 * Writes <type>.blocks (random ggml blocks; the f16 scales: every edge value on the first blocks, random
 * finite bits after) and <type>.f32 (ggml's own dequantize_row_<type> of them) for quant_test.ts.
 * ggml_dequant.c is the harness: build it against stable-diffusion.cpp's ggml and pass its path:
 *
 *   g++ -O2 -x c ggml_dequant.c -x none <sdcpp>/build/ggml/src/libggml-base.a -lm -fopenmp -o ggml_dequant
 *   deno run -A make_fixtures.ts ./ggml_dequant
 */
const [harness] = Deno.args;
const dir = new URL(".", import.meta.url).pathname;
/** elements per block, bytes per block, offsets of the f16 scales */
const FORMATS: Record<string, [number, number, number[]]> = {
  q2_k: [256, 84, [80, 82]],
  q3_k: [256, 110, [108]],
  q4_k: [256, 144, [0, 2]],
  q5_k: [256, 176, [0, 2]],
  q6_k: [256, 210, [208]],
  q4_0: [32, 18, [0]],
  q4_1: [32, 20, [0, 2]],
  q5_0: [32, 22, [0]],
  q5_1: [32, 24, [0, 2]],
  q8_0: [32, 34, [0]],
};
let seed = 2026;
const r = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
const EDGE = [0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x3c00, 0x0400];
for (const [type, [be, bs, scales]] of Object.entries(FORMATS)) {
  const nb = be === 256 ? 6 : 24, n = nb * be;
  const blocks = new Uint8Array(nb * bs).map(() => Math.floor(r() * 256));
  for (let b = 0; b < nb; b++) {
    for (const s of scales) {
      let h = b < EDGE.length ? EDGE[(b + s) % EDGE.length] : blocks[b * bs + s] | (blocks[b * bs + s + 1] << 8);
      if ((h & 0x7c00) === 0x7c00) h &= 0xbfff; // finite
      blocks[b * bs + s] = h & 255;
      blocks[b * bs + s + 1] = h >> 8;
    }
  }
  const p = new Deno.Command(harness, { args: [type, String(n)], stdin: "piped", stdout: "piped" }).spawn();
  const w = p.stdin.getWriter();
  await w.write(blocks);
  await w.close();
  await Deno.writeFile(`${dir}/${type}.blocks`, blocks);
  await Deno.writeFile(`${dir}/${type}.f32`, (await p.output()).stdout);
}
