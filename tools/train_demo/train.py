#!/usr/bin/python3
"""Trains sdflow's demo model (a small SD 1.x-family text-to-image model) on procedural pictures, on the CPU.

Debian's python3 with python3-torch and python3-numpy; from the repository root:

    /usr/bin/python3 tools/train_demo/train.py all --work .cache/train_demo --out models/demo/sdflow-demo-f16.safetensors

Steps (each resumable on its own; `all` runs them in order):
  data       render N captioned pictures (scenes.py) and tokenize every caption with sdflow's own tokenizer
  vae        train the autoencoder (L1 + MSE + a small KL term) on random crops, then on whole pictures
  latents    encode the whole dataset once (mean and log-variance)
  diffusion  train text encoder + UNet jointly: eps-prediction, SD's scaled-linear 1000-step schedule,
             10% empty captions (for classifier-free guidance), min-SNR-5 loss weights, EMA of the weights
  export     write the EMA weights as an f16 safetensors file in the ldm layout with the metadata sdflow reads

Training runs a fixed number of optimizer steps (the diffusion step saves its state every 10 minutes and
resumes from it); with the fixed seed the recipe is repeatable on the same torch build (CPU float results
differ across builds in the last bits, so the bytes may differ elsewhere).
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402
from model import AutoencoderKL, ClipTextModel, UNetModel, checkpoint_state  # noqa: E402

CONFIG = {
    "clip": {"width": 128, "layers": 3, "heads": 4, "ff": 512},
    "unet": {"ch": 32, "mult": [1, 2, 4], "res_blocks": 1, "attention_levels": [0, 1, 2], "heads": 4},
    "vae": {"ch": 32, "mult": [1, 2, 2, 2], "res_blocks": 1},
}
SEED = 20261202
VOCAB = 49408  # CLIP's: the exported embedding table has every row
TOKEN_EMBEDDING = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
EMPTY = ""


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def make_models(vocab=VOCAB):
    c, u, v = CONFIG["clip"], CONFIG["unet"], CONFIG["vae"]
    clip = ClipTextModel(c["width"], c["layers"], c["heads"], c["ff"], vocab=vocab)
    unet = UNetModel(u["ch"], u["mult"], u["res_blocks"], u["attention_levels"], u["heads"], c["width"])
    vae = AutoencoderKL(v["ch"], v["mult"], v["res_blocks"])
    return clip, unet, vae


# ------------------------------------------------------------------ data
def step_data(args):
    rng = np.random.default_rng(SEED)
    images = np.empty((args.count, scenes.SIZE, scenes.SIZE, 3), dtype=np.uint8)
    captions = []
    t0 = time.time()
    for i in range(args.count):
        images[i], cap = scenes.sample(rng)
        captions.append(cap)
        if i % 2000 == 0:
            log(f"data {i}/{args.count} ({time.time() - t0:.0f} s)")
    np.save(f"{args.work}/images.npy", images)
    unique = sorted(set(captions) | {EMPTY})
    with open(f"{args.work}/captions.json", "w") as f:
        json.dump({"captions": captions}, f)
    with open(f"{args.work}/unique.json", "w") as f:
        json.dump(unique, f)
    subprocess.run(
        ["deno", "run", "-A", "tools/train_demo/tokenize.ts", f"{args.work}/unique.json", f"{args.work}/tokens.json"],
        check=True,
    )
    log(f"data: {args.count} pictures, {len(unique)} distinct captions")


def used_tokens(args):
    """The token ids the captions use. Only their embedding rows train (the other ~49 000 would cost an
    optimizer update every step and never get a gradient); export puts them back into the full table."""
    with open(f"{args.work}/tokens.json") as f:
        return sorted({i for ids in json.load(f).values() for i in ids})


def load_tokens(args, used):
    """Every picture's caption and the empty caption, as rows of the compact vocabulary `used`."""
    with open(f"{args.work}/captions.json") as f:
        captions = json.load(f)["captions"]
    with open(f"{args.work}/tokens.json") as f:
        table = json.load(f)
    compact = torch.zeros(VOCAB, dtype=torch.long)
    compact[torch.tensor(used)] = torch.arange(len(used))
    ids = compact[torch.tensor([table[c] for c in captions], dtype=torch.long)]
    return ids, compact[torch.tensor(table[EMPTY], dtype=torch.long)]


def to_unit(images):
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


# ------------------------------------------------------------------ autoencoder
def step_vae(args):
    """Two phases: random crops teach local detail cheaply; whole pictures then adapt the mid-block attention
    and the borders to the side the model runs at (at 128x128, crops alone reconstructed whole pictures badly:
    L1 0.38 against 0.05 on crops)."""
    torch.manual_seed(SEED + 1)
    _, _, vae = make_models()
    images = np.load(f"{args.work}/images.npy", mmap_mode="r")
    rng = np.random.default_rng(SEED + 1)
    crop_path = f"{args.work}/vae_crop.pt"
    if os.path.exists(crop_path):
        vae.load_state_dict(torch.load(crop_path))
        log("vae: crop phase done before, loaded")
    else:
        train_vae(vae, images, rng, args.vae_steps, args.batch, args.crop, 1e-3)
        torch.save(vae.state_dict(), crop_path)
    train_vae(vae, images, rng, args.vae_full_steps, args.vae_full_batch, scenes.SIZE, 5e-4)
    torch.save(vae.state_dict(), f"{args.work}/vae.pt")
    log(f"vae: {args.vae_steps} crop steps, {args.vae_full_steps} whole-picture steps")


def train_vae(vae, images, rng, steps, batch, crop, lr):
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    for step in range(1, steps + 1):
        idx = np.sort(rng.choice(len(images), batch, replace=False))
        y0, x0 = rng.integers(0, scenes.SIZE - crop + 1, 2)
        x = to_unit(np.ascontiguousarray(images[idx, y0:y0 + crop, x0:x0 + crop]))
        mean, logvar = vae.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        rec = vae.decode(z)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = F.l1_loss(rec, x) + 0.5 * F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            log(f"vae {crop}px step {step} loss {loss.item():.4f} kl {kl.item():.2f}")


def step_latents(args):
    _, _, vae = make_models()
    vae.load_state_dict(torch.load(f"{args.work}/vae.pt"))
    vae.eval()
    images = np.load(f"{args.work}/images.npy", mmap_mode="r")
    means, logvars = [], []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            m, lv = vae.encode(to_unit(np.ascontiguousarray(images[i:i + 64])))
            means.append(m)
            logvars.append(lv)
        mean, logvar = torch.cat(means), torch.cat(logvars)
        scale = 1.0 / mean.std().item()
        x = to_unit(np.ascontiguousarray(images[:16]))
        err = (vae.decode(mean[:16]) - x).abs().mean().item()
    torch.save({"mean": mean, "logvar": logvar, "scale": scale}, f"{args.work}/latents.pt")
    log(f"latents: {tuple(mean.shape)}, scaling factor {scale:.5f}, reconstruction L1 {err:.4f} (of [-1, 1])")


# ------------------------------------------------------------------ diffusion
def alphas_cumprod():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def ema_update(ema, model, decay):
    with torch.no_grad():
        for e, p in zip(ema, model):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def step_diffusion(args):
    """Data-parallel over `--procs` processes (one core each: torch's own threads gain little on these small
    ops), which average their gradients every step, so every process holds the same weights."""
    if args.procs == 1:
        diffusion_worker(0, args)
    else:
        torch.multiprocessing.spawn(diffusion_worker, args=(args,), nprocs=args.procs)


def diffusion_worker(rank, args):
    world = args.procs
    torch.set_num_threads(args.threads)
    if world > 1:
        os.sched_setaffinity(0, {rank % os.cpu_count()})
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)
    torch.manual_seed(SEED + 2)
    used = used_tokens(args)
    clip, unet, _ = make_models(vocab=len(used))
    lat = torch.load(f"{args.work}/latents.pt")
    ids, empty = load_tokens(args, used)
    params = list(clip.parameters()) + list(unet.parameters())
    state_path = f"{args.work}/diffusion.pt"
    step = 0
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    if os.path.exists(state_path):
        s = torch.load(state_path)
        clip.load_state_dict(s["clip"])
        unet.load_state_dict(s["unet"])
        opt.load_state_dict(s["opt"])
        ema = s["ema"]
        step = s["step"]
        if rank == 0:
            log(f"diffusion: resumed at step {step}")
    ac = alphas_cumprod()
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for eps-prediction
    rng = torch.Generator().manual_seed(SEED + 3 + step * world + rank)
    n = len(ids)
    last_save = time.time()
    t0, s0 = time.time(), step
    while step < args.diffusion_steps:
        idx = torch.randint(0, n, (args.batch,), generator=rng)
        mean, logvar = lat["mean"][idx], lat["logvar"][idx]
        x0 = (mean + torch.randn(mean.shape, generator=rng) * torch.exp(0.5 * logvar)) * lat["scale"]
        tok = ids[idx].clone()
        drop = torch.rand(args.batch, generator=rng) < 0.1
        tok[drop] = empty
        t = torch.randint(0, 1000, (args.batch,), generator=rng)
        eps = torch.randn(x0.shape, generator=rng)
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pred = unet(xt, t, clip(tok))
        loss = ((pred - eps) ** 2).mean(dim=(1, 2, 3)).mul(weight[t]).mean()
        for g in opt.param_groups:
            g["lr"] = learning_rate(args, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            average_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema, params, min(0.999, (1 + step) / (10 + step)))
        step += 1
        if rank == 0 and step % 50 == 0:
            rate = (step - s0) / (time.time() - t0)
            log(f"diffusion step {step} loss {loss.item():.4f} ({rate:.2f} steps/s of {args.batch * world})")
        if rank == 0 and time.time() - last_save > args.save_every:
            save_diffusion(state_path, clip, unet, opt, ema, step)
            last_save = time.time()
    if rank == 0:
        save_diffusion(state_path, clip, unet, opt, ema, step)
        log(f"diffusion: {step} steps in all")


def average_gradients(params, world):
    """One all-reduce of every gradient, flattened into one buffer."""
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def learning_rate(args, step):
    """A 200-step warm-up, then a cosine decay to a tenth over the whole run."""
    warm = min(1.0, (step + 1) / 200)
    cosine = 0.55 + 0.45 * math.cos(math.pi * min(1.0, step / args.diffusion_steps))
    return args.lr * warm * cosine


def save_diffusion(path, clip, unet, opt, ema, step):
    torch.save({"clip": clip.state_dict(), "unet": unet.state_dict(), "opt": opt.state_dict(), "ema": ema,
                "step": step}, path + ".tmp")
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------ export
def step_export(args):
    used = used_tokens(args)
    clip, unet, vae = make_models(vocab=len(used))
    s = torch.load(f"{args.work}/diffusion.pt")
    with torch.no_grad():
        for e, p in zip(s["ema"], list(clip.parameters()) + list(unet.parameters())):
            p.copy_(e)
    vae.load_state_dict(torch.load(f"{args.work}/vae.pt"))
    scale = torch.load(f"{args.work}/latents.pt")["scale"]
    state = checkpoint_state(clip, unet, vae)
    # Words the captions never use keep small random embeddings, as at initialization.
    full = torch.randn(VOCAB, CONFIG["clip"]["width"], generator=torch.Generator().manual_seed(SEED + 4)) * 0.02
    full[torch.tensor(used)] = state[TOKEN_EMBEDDING]
    state[TOKEN_EMBEDDING] = full
    meta = {
        "sdflow.unet.num_heads": str(CONFIG["unet"]["heads"]),
        "sdflow.clip.heads": str(CONFIG["clip"]["heads"]),
        "sdflow.vae.scaling_factor": f"{scale:.6f}",
        "sdflow.demo.recipe": "tools/train_demo/train.py",
        "sdflow.demo.steps": str(s["step"]),
        "sdflow.demo.size": str(scenes.SIZE),
        "sdflow.demo.config": json.dumps(CONFIG),
    }
    write_safetensors(args.out, state, meta)
    total = sum(v.numel() for v in state.values())
    log(f"export: {args.out}, {total / 1e6:.2f} M parameters, {os.path.getsize(args.out) / 2**20:.1f} MiB")


def write_safetensors(path, state, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name in sorted(state):
        a = state[name].detach().float().numpy().astype("<f2")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} is not finite in f16")
        b = a.tobytes()
        header[name] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["data", "vae", "latents", "diffusion", "export", "all"])
    p.add_argument("--work", default=".cache/train_demo")
    p.add_argument("--out", default="models/demo/sdflow-demo-f16.safetensors")
    p.add_argument("--size", type=int, default=scenes.SIZE, help="picture side in pixels (a multiple of 32)")
    p.add_argument("--count", type=int, default=40000, help="pictures in the dataset")
    p.add_argument("--vae-steps", type=int, default=800)
    p.add_argument("--diffusion-steps", type=int, default=7000, help="total, counting a resumed run's")
    p.add_argument("--crop", type=int, default=32, help="autoencoder training crop side (first phase)")
    p.add_argument("--vae-full-steps", type=int, default=1000, help="autoencoder steps on whole pictures")
    p.add_argument("--vae-full-batch", type=int, default=12)
    p.add_argument("--batch", type=int, default=0, help="batch size (default 24 for vae, 32 for diffusion)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest here: these ops are small)")
    p.add_argument("--procs", type=int, default=2, help="diffusion: data-parallel processes, one core each")
    p.add_argument("--port", type=int, default=29511, help="diffusion: the processes' rendezvous port")
    p.add_argument("--save-every", type=int, default=600, help="diffusion: seconds between saved states")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scenes.set_size(args.size)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    steps = ["data", "vae", "latents", "diffusion", "export"] if args.step == "all" else [args.step]
    for s in steps:
        batch = args.batch
        args.batch = batch or (24 if s == "vae" else 32)
        globals()[f"step_{s}"](args)
        args.batch = batch


if __name__ == "__main__":
    main()
