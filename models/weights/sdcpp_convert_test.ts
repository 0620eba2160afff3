/**
 * `convertModel` writes what stable-diffusion.cpp's `sd-cli -M convert` writes, byte for byte: the inputs and
 * sd.cpp's outputs are fixtures (testdata/sdcpp_convert/, made by its make_input.py and sd-cli). The input
 * exercises sd.cpp's rule (quantized linear weights from f16, f32 and bf16; biases, 3x3 and 1x1
 * convolutions, the time embedding, a token embedding and rows that are not whole blocks kept; a leading 1
 * dim trimmed; position_ids dropped) with a zero block and f16-range extremes, so equal bytes mean the same
 * tensor names, order, types, shapes, offsets, quantization rounding and f16 rounding.
 */
import { assertEquals } from "../../tests/assert.ts";
import { convertModel } from "./convert.ts";
import { openWeights } from "./open.ts";
import type { WeightType } from "./weight_type.ts";

const dir = new URL("./testdata/sdcpp_convert/", import.meta.url).pathname;

Deno.test("convert: byte-identical to sd.cpp's -M convert for every --type", async (t) => {
  const tmp = await Deno.makeTempDir({ prefix: "sdflow-sdcpp-convert-" });
  try {
    for (const type of ["q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "f16"] as WeightType[]) {
      await t.step(type, async () => {
        const out = `${tmp}/${type}.gguf`;
        await convertModel(`${dir}/input.safetensors`, out, { type });
        const ours = await Deno.readFile(out);
        const theirs = await Deno.readFile(`${dir}/sd_${type}.gguf`);
        const f = await openWeights(out);
        const types = [...f.tensors.values()].map((i) => i.dtype);
        f.close();
        assertEquals(types.filter((d) => d === type).length > 0, true, `${type}: some tensor is ${type}`);
        assertEquals(ours.length, theirs.length, `${type}: file size`);
        const at = ours.findIndex((b, i) => b !== theirs[i]);
        assertEquals(at, -1, `${type}: first differing byte`);
      });
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
