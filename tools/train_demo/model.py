"""The demo model's three networks as trainable torch modules whose state_dict keys are the ordinary
CompVis/ldm single-file names of an SD 1.x checkpoint (under cond_stage_model.transformer.text_model.,
model.diffusion_model. and first_stage_model.), so the exported file loads through the same code as any
SD 1.x checkpoint. The maths follows transformers' CLIPTextModel and ldm's UNetModel / AutoencoderKL;
every size is a constructor argument (the recipe's choice is in train.py's CONFIG).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention(q, k, v, heads, causal=False):
    b, n, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool, device=q.device), 1), float("-inf"))
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)


# ------------------------------------------------------------------ CLIP text model (transformers naming)
class ClipAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        return self.out_proj(attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, causal=True))


class ClipMlp(nn.Module):
    def __init__(self, width, ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, ff), nn.Linear(ff, width)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu, as OpenAI CLIP


class ClipLayer(nn.Module):
    def __init__(self, width, heads, ff):
        super().__init__()
        self.self_attn, self.layer_norm1 = ClipAttention(width, heads), nn.LayerNorm(width)
        self.mlp, self.layer_norm2 = ClipMlp(width, ff), nn.LayerNorm(width)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEmbeddings(nn.Module):
    def __init__(self, vocab, width, tokens):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(tokens, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.01)

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding.weight[None, : ids.shape[1]]


class ClipEncoder(nn.Module):
    def __init__(self, width, layers, heads, ff):
        super().__init__()
        self.layers = nn.ModuleList(ClipLayer(width, heads, ff) for _ in range(layers))


class ClipTextModel(nn.Module):
    """Hidden states of the last layer, then final_layer_norm (clip-skip 1, SD 1.x's default)."""

    def __init__(self, width, layers, heads, ff, vocab=49408, tokens=77):
        super().__init__()
        self.embeddings = ClipEmbeddings(vocab, width, tokens)
        self.encoder = ClipEncoder(width, layers, heads, ff)
        self.final_layer_norm = nn.LayerNorm(width)

    def forward(self, ids):
        x = self.embeddings(ids)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.final_layer_norm(x)


# ------------------------------------------------------------------ UNet (ldm openaimodel naming)
def group_norm(ch, eps):
    return nn.GroupNorm(32, ch, eps=eps)


def timestep_embedding(t, dim, dtype, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = t.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, out_ch):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(ch, 1e-5), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, out_ch))
        self.out_layers = nn.Sequential(
            group_norm(out_ch, 1e-5), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Conv2d(ch, out_ch, 1) if ch != out_ch else nn.Identity()

    def forward(self, x, emb, context):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim))

    def forward(self, x, context=None):
        c = x if context is None else context
        return self.to_out(attention(self.to_q(x), self.to_k(c), self.to_v(c), self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.attn1, self.attn2 = CrossAttention(dim, dim, heads), CrossAttention(dim, context_dim, heads)
        self.ff = FeedForward(dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff.net(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, ch, context_dim, heads):
        super().__init__()
        self.norm = group_norm(ch, 1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(ch, context_dim, heads)])
        self.proj_out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, emb, context):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            y = block(y, context)
        return x + self.proj_out(y.reshape(b, h, w, c).permute(0, 3, 1, 2))


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, emb, context):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, emb, context):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ConvIn(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x, emb, context):
        return self.conv(x)


class Block(nn.ModuleList):
    """ldm's TimestepEmbedSequential: its modules are named 0, 1, 2 in the file."""

    def forward(self, x, emb, context):
        for m in self:
            x = m(x, emb, context)
        return x


class UNetModel(nn.Module):
    def __init__(self, ch, mult, res_blocks, attention_levels, heads, context_dim, in_ch=4, out_ch=4):
        super().__init__()
        emb_ch = ch * 4
        self.ch = ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.input_blocks = nn.ModuleList([Block([_Conv(conv_in)])])
        chans, c = [ch], ch
        for level, m in enumerate(mult):
            for _ in range(res_blocks):
                layers = [ResBlock(c, emb_ch, ch * m)]
                c = ch * m
                if level in attention_levels:
                    layers.append(SpatialTransformer(c, context_dim, heads))
                self.input_blocks.append(Block(layers))
                chans.append(c)
            if level != len(mult) - 1:
                self.input_blocks.append(Block([Downsample(c)]))
                chans.append(c)
        self.middle_block = Block(
            [ResBlock(c, emb_ch, c), SpatialTransformer(c, context_dim, heads), ResBlock(c, emb_ch, c)]
        )
        self.output_blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(res_blocks + 1):
                layers = [ResBlock(c + chans.pop(), emb_ch, ch * m)]
                c = ch * m
                if level in attention_levels:
                    layers.append(SpatialTransformer(c, context_dim, heads))
                if level and i == res_blocks:
                    layers.append(Upsample(c))
                self.output_blocks.append(Block(layers))
        self.out = nn.Sequential(group_norm(c, 1e-5), nn.SiLU(), nn.Conv2d(c, out_ch, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x, t, context):
        emb = self.time_embed(timestep_embedding(t, self.ch, self.time_embed[0].weight.dtype))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


class _Conv(nn.Module):
    """input_blocks.0.0 is a bare Conv2d in ldm: its parameters sit at input_blocks.0.0.weight/bias."""

    def __init__(self, conv):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x, emb, context):
        return F.conv2d(x, self.weight, self.bias, padding=1)


# ------------------------------------------------------------------ AutoencoderKL (ldm naming)
class VaeResnet(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, 1e-6), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = group_norm(cout, 1e-6), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class VaeAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = group_norm(c, 1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, c, h * w).transpose(1, 2) for m in (self.q, self.k, self.v))
        o = attention(q, k, v, 1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(o)


class VaeDown(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VaeUp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class VaeMid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = VaeResnet(c, c), VaeAttention(c), VaeResnet(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class VaeLevel(nn.Module):
    pass


class Encoder(nn.Module):
    def __init__(self, ch, mult, res_blocks, z):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        c = ch
        for i, m in enumerate(mult):
            level = VaeLevel()
            level.block = nn.ModuleList()
            for _ in range(res_blocks):
                level.block.append(VaeResnet(c, ch * m))
                c = ch * m
            if i != len(mult) - 1:
                level.downsample = VaeDown(c)
            self.down.append(level)
        self.mid = VaeMid(c)
        self.norm_out, self.conv_out = group_norm(c, 1e-6), nn.Conv2d(c, 2 * z, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for b in level.block:
                h = b(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, ch, mult, res_blocks, z):
        super().__init__()
        c = ch * mult[-1]
        self.conv_in = nn.Conv2d(z, c, 3, padding=1)
        self.mid = VaeMid(c)
        levels = [None] * len(mult)
        for i in reversed(range(len(mult))):
            level = VaeLevel()
            level.block = nn.ModuleList()
            for _ in range(res_blocks + 1):
                level.block.append(VaeResnet(c, ch * mult[i]))
                c = ch * mult[i]
            if i != 0:
                level.upsample = VaeUp(c)
            levels[i] = level
        self.up = nn.ModuleList(levels)
        self.norm_out, self.conv_out = group_norm(c, 1e-6), nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for b in level.block:
                h = b(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch, mult, res_blocks, z=4):
        super().__init__()
        self.encoder, self.decoder = Encoder(ch, mult, res_blocks, z), Decoder(ch, mult, res_blocks, z)
        self.quant_conv, self.post_quant_conv = nn.Conv2d(2 * z, 2 * z, 1), nn.Conv2d(z, z, 1)

    def encode(self, x):
        """Mean and log-variance of the latent of pictures in [-1, 1]."""
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


def checkpoint_state(clip, unet, vae):
    """One state dict with the ldm single-file prefixes."""
    out = {}
    for prefix, module in (
        ("cond_stage_model.transformer.text_model.", clip),
        ("model.diffusion_model.", unet),
        ("first_stage_model.", vae),
    ):
        for k, v in module.state_dict().items():
            out[prefix + k] = v
    return out
