"""Writes input.safetensors: a few SD-named tensors that exercise stable-diffusion.cpp's conversion rule
(quantized linear weights from f16/f32/bf16, kept biases, convolutions, time embedding, embeddings, rows that
are not whole blocks, a leading 1 dim, a dropped i64 position_ids) with edge values (a zero block,
f16-range extremes). The sd_*.gguf files next to it are stable-diffusion.cpp's `sd-cli -M convert -m
input.safetensors -o sd_TYPE.gguf --type TYPE` outputs (models/weights/sdcpp_convert_test.ts)."""
import json, struct
import numpy as np

rng = np.random.default_rng(10)
tensors = {}

def put(name, arr, dtype):
    tensors[name] = (arr, dtype)

lin = (rng.standard_normal((64, 64)) * 0.05).astype(np.float32)
lin[3, :32] = 0.0                      # an all-zero block
lin[5, 7] = 60000.0                    # f16-range extremes
lin[6, 40] = -65000.0
put("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", lin, "F16")
put("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.bias", rng.standard_normal(64).astype(np.float32), "F16")
put("model.diffusion_model.input_blocks.0.0.weight", rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "F16")
put("model.diffusion_model.input_blocks.1.1.proj_in.weight", rng.standard_normal((64, 64, 1, 1)).astype(np.float32), "F16")
put("model.diffusion_model.time_embed.0.weight", rng.standard_normal((64, 32)).astype(np.float32), "F16")
put("model.diffusion_model.out.2.weight", rng.standard_normal((4, 40)).astype(np.float32), "F16")
put("model.diffusion_model.middle_block.1.proj_out.weight", rng.standard_normal((32, 32)).astype(np.float32), "BF16")
put("model.diffusion_model.middle_block.1.extra.weight", rng.standard_normal((1, 2, 64)).astype(np.float32), "F32")
put("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", rng.standard_normal((16, 64)).astype(np.float32), "F16")
put("cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight", rng.standard_normal((48, 96)).astype(np.float32), "F32")
put("cond_stage_model.transformer.text_model.embeddings.position_ids", np.arange(8, dtype=np.int64).reshape(1, 8), "I64")
put("first_stage_model.decoder.norm_out.weight", (1 + 0.1 * rng.standard_normal(64)).astype(np.float32), "F32")

def raw(arr, dtype):
    if dtype == "F16":
        return arr.astype(np.float16).tobytes()
    if dtype == "BF16":
        return (arr.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    if dtype == "F32":
        return arr.astype(np.float32).tobytes()
    return arr.astype(np.int64).tobytes()

header, blobs, off = {}, [], 0
for name, (arr, dtype) in tensors.items():
    b = raw(arr, dtype)
    header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open("input.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
