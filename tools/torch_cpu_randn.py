#!/usr/bin/python3
"""Writes models/sampling/testdata/torch_cpu_randn.json: torch.randn on the CPU, the values that
sdflow's `--rng cpu` (models/sampling/rng.ts, TorchCpuRng; stable-diffusion.cpp's MT19937RNG) must
reproduce.

Run with Debian's python (python3-torch): /usr/bin/python3 tools/torch_cpu_randn.py

Each case seeds the default CPU generator once (torch.manual_seed) and then makes the listed calls
in order, so the state carried between calls (the mt19937 position and the cached second value of
the scalar path, n < 16) is covered too.
"""

import json
import os

import torch

CASES = [
    # seed, call sizes: the scalar path (< 16), the 16-wide path, a tail that redraws the last 16,
    # a latent-sized call, and scalar calls that use the cached second Box-Muller value.
    (42, [5, 16, 17, 3, 1]),
    (0, [1, 1, 15, 33, 4 * 8 * 8]),
    (2**32 + 7, [16, 5]),  # only the low 32 bits seed mt19937
    (123456789, [4 * 16 * 16, 2, 19]),
]


def main() -> None:
    out = {
        "source": f"torch {torch.__version__} torch.randn on the CPU, float32 (tools/torch_cpu_randn.py)",
        "cases": [],
    }
    for seed, sizes in CASES:
        torch.manual_seed(seed)
        calls = [[float(v) for v in torch.randn(n, dtype=torch.float32).tolist()] for n in sizes]
        out["cases"].append({"seed": str(seed), "calls": calls})
    path = os.path.join(os.path.dirname(__file__), "..", "models", "sampling", "testdata", "torch_cpu_randn.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
