import { assert, assertEquals } from "../../tests/assert.ts";
import { diffusersToLdmName, ldmToDiffusersNames, type ModelFamily, upBlocksWithAttention } from "./mod.ts";
import { sharedTest, sharedUrl } from "../../tests/shared.ts";

/** ldm tensors with no diffusers counterpart. */
const LDM_ONLY = /(^cond_stage_model\.model\.|^conditioner\.embedders\.1\.model\.)logit_scale$/;

for (const [file, family] of [["sd15", "sd1"], ["sd21", "sd2"], ["sdxl", "sdxl"]] as [string, ModelFamily][]) {
  Deno.test({
    ...sharedTest(
      `names: every ldm tensor of ${file}-tensors.txt maps to diffusers and back`,
      `reference/${file}-tensors.txt`,
    ),
    fn: async () => {
      const ldm = (await Deno.readTextFile(sharedUrl(`reference/${file}-tensors.txt`))).trim().split("\n").map((l) =>
        l.split("\t")[0]
      );
      const forward = new Map<string, string[]>();
      for (const name of ldm) {
        const d = ldmToDiffusersNames(name, family);
        if (LDM_ONLY.test(name)) {
          assertEquals(d, [], name);
          continue;
        }
        assert(d.length === 1 || (d.length === 3 && /in_proj_(weight|bias)$/.test(name)), name);
        forward.set(name, d);
      }
      const all = [...forward.values()].flat();
      assertEquals(new Set(all).size, all.length, "two ldm tensors share a diffusers name");
      const ctx = { family, upBlocksWithAttention: upBlocksWithAttention(all) };
      for (const [name, ds] of forward) {
        ds.forEach((d, i) => {
          const back = diffusersToLdmName(d, ctx);
          assertEquals(back?.name, name, `${d} -> ${back?.name}, expected ${name}`);
          if (ds.length === 3) assertEquals(back?.part, { index: i, of: 3 });
          const attn = /first_stage_model\.(en|de)coder\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(name);
          assertEquals(back?.reshape, attn ? "conv1x1" : undefined, name);
        });
      }
      // Spot checks against diffusers' own conversion script.
      if (family === "sd1") {
        assertEquals(ldmToDiffusersNames("model.diffusion_model.output_blocks.2.1.conv.weight", family), [
          "unet.up_blocks.0.upsamplers.0.conv.weight",
        ]);
        assertEquals(ldmToDiffusersNames("model.diffusion_model.input_blocks.4.0.skip_connection.bias", family), [
          "unet.down_blocks.1.resnets.0.conv_shortcut.bias",
        ]);
        assertEquals(ldmToDiffusersNames("first_stage_model.decoder.up.3.block.0.conv1.weight", family), [
          "vae.decoder.up_blocks.0.resnets.0.conv1.weight",
        ]);
      }
    },
  });
}

Deno.test("names: older diffusers VAE attention names and unmapped names", () => {
  const ctx = { family: "sd1" as const, upBlocksWithAttention: new Set([1, 2, 3]) };
  assertEquals(diffusersToLdmName("vae.decoder.mid_block.attentions.0.proj_attn.weight", ctx), {
    name: "first_stage_model.decoder.mid.attn_1.proj_out.weight",
    reshape: "conv1x1",
  });
  assertEquals(
    diffusersToLdmName("vae.encoder.mid_block.attentions.0.query.bias", ctx)?.name,
    "first_stage_model.encoder.mid.attn_1.q.bias",
  );
  assertEquals(
    diffusersToLdmName("unet.up_blocks.1.upsamplers.0.conv.weight", ctx)?.name,
    "model.diffusion_model.output_blocks.5.2.conv.weight",
  );
  assertEquals(diffusersToLdmName("unet.something_else.weight", ctx), undefined);
  assertEquals(diffusersToLdmName("safety_checker.x", ctx), undefined);
});
