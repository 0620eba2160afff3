#!/usr/bin/python3
"""Writes models/sampling/testdata/sampler_reference.json: an independent reference for sdflow's sigma
schedules and k-diffusion samplers (models/sampling/schedules.ts, samplers.ts).

Run with Debian's python (numpy): /usr/bin/python3 tools/sampler_reference.py

Written from stable-diffusion.cpp's src/runtime/denoiser.hpp (master-827, the version sdflow matches:
schedulers, get_ancestral_step, sample_*) and k-diffusion's sampling.py, not from sdflow's code.
Arithmetic is float64 except where sd.cpp makes a discrete choice from float32 values (the timestep
grids of the discrete, simple, smoothstep and sgm_uniform schedulers, linear_space) and the
alphas_cumprod table, which sd.cpp computes as a float32 running product; these are done in float32
(numpy.float32 rounds every operation), so the reference picks the same timesteps sd.cpp does.

The samplers run on a closed-form denoiser: data ~ N(mu, s^2) per element, whose exact denoiser is
D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2). Noise comes from a stored table (one row per
randn call, in order), so stochastic samplers are compared draw for draw.

Output: {"source", "alphas_cumprod_f32": bool note, "schedules": [{scheduler, steps, family?, sigmas}],
         "denoiser": {"mu", "s"}, "noise": [[...], ...],
         "samplers": [{method, eta, scheduler, steps, sigmas, x, out, calls (sigma of each model call),
                       draws (randn calls made)}]}
"""

import json
import math
import os

import numpy as np

F = np.float32
TIMESTEPS = 1000
N = 16  # latent elements per sampler case

# ---- the discrete (CompVis) noise schedule --------------------------------------------------------


def alphas_cumprod_f32() -> np.ndarray:
    """sd.cpp calculate_alphas_cumprod: scaled-linear betas, float32 running product."""
    ls = F(math.sqrt(F(0.00085)))
    le = F(math.sqrt(F(0.012)))
    amount = F(le - ls)
    product = F(1.0)
    out = np.zeros(TIMESTEPS, dtype=np.float64)
    for i in range(TIMESTEPS):
        beta = F(ls + F(amount * F(F(i) / F(TIMESTEPS - 1))))
        product = F(product * F(F(1.0) - F(float(beta) * float(beta))))
        out[i] = float(product)
    return out


ALPHAS = alphas_cumprod_f32()
SIGMAS = np.sqrt((1.0 - ALPHAS) / ALPHAS)
LOG_SIGMAS = np.log(SIGMAS)
SIGMA_MIN = float(SIGMAS[0])
SIGMA_MAX = float(SIGMAS[-1])


def t_to_sigma(t: float) -> float:
    """CompVisDenoiser::t_to_sigma: linear interpolation of log sigma between table entries."""
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    return math.exp((1 - w) * LOG_SIGMAS[lo] + w * LOG_SIGMAS[hi])


# ---- schedulers (sd.cpp SigmaScheduler subclasses) ------------------------------------------------


def linear_space_f32(start: float, end: float, n: int) -> list:
    """sd.cpp linear_space: a float increment accumulated in float."""
    inc = F(F(end - start) / F(n - 1)) if n > 1 else F(0)
    out = [F(start)]
    for _ in range(1, n):
        out.append(F(out[-1] + inc))
    return out[:n]


def discrete(n: int) -> list:
    if n == 0:
        return []
    if n == 1:
        return [t_to_sigma(TIMESTEPS - 1), 0.0]
    step = F(F(TIMESTEPS - 1) / F(n - 1))
    return [t_to_sigma(float(F(F(TIMESTEPS - 1) - F(step * F(i))))) for i in range(n)] + [0.0]


def karras(n: int, rho: float = 7.0) -> list:
    # For one step sd.cpp divides by zero (NaN); k-diffusion's linspace(0, 1, 1) = [0] gives sigma_max,
    # which sdflow follows (documented in schedules.ts).
    smin = max(SIGMA_MIN, 1e-6)
    lo, hi = smin ** (1 / rho), SIGMA_MAX ** (1 / rho)
    ramp = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
    return [(hi + r * (lo - hi)) ** rho for r in ramp] + [0.0]


def exponential(n: int) -> list:
    # One step: k-diffusion's value (sigma_max), as for karras.
    lmin, lmax = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
    step = (lmax - lmin) / (n - 1) if n > 1 else 0.0
    return [math.exp(lmax - step * i) for i in range(n)] + [0.0]


AYS_LEVELS = {  # NVIDIA's Align Your Steps tables (research.nvidia.com/labs/toronto-ai/AlignYourSteps)
    "sd1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "sdxl": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
}


def log_linear_interpolation(levels: list, new_len: int) -> list:
    """sd.cpp log_linear_interpolation: log sigma ascending, interpolated on float linspace(0, 1) grids."""
    xs = [float(v) for v in linear_space_f32(0.0, 1.0, len(levels))]
    ys = [math.log(float(F(v))) for v in reversed(levels)]
    nx = [float(v) for v in linear_space_f32(0.0, 1.0, new_len)]
    nx[0] = max(nx[0], xs[0])
    nx[-1] = min(nx[-1], xs[-1])
    out, j, i = [], 0, 0
    while i < new_len:
        if j + 2 < len(xs) and (xs[j] > nx[i] or nx[i] > xs[j + 1]):
            j += 1
            continue
        p = (nx[i] - xs[j]) / (xs[j + 1] - xs[j])
        out.append(ys[j] * (1 - p) + ys[j + 1] * p)
        i += 1
    return [math.exp(v) for v in reversed(out)]


def ays(n: int, family: str) -> list:
    levels = AYS_LEVELS[family]
    out = list(levels) if n + 1 == len(levels) else log_linear_interpolation(levels, n + 1)
    out[n] = 0.0
    return out


def sgm_uniform(n: int) -> list:
    ts = linear_space_f32(TIMESTEPS - 1, 0.0, n + 1)
    return [t_to_sigma(float(t)) for t in ts[:n]] + [0.0]


def simple(n: int) -> list:
    factor = F(F(TIMESTEPS) / F(n))
    return [t_to_sigma(max(0, TIMESTEPS - 1 - int(F(F(i) * factor)))) for i in range(n)] + [0.0]


def smoothstep(n: int) -> list:
    if n == 1:
        return [t_to_sigma(TIMESTEPS - 1), 0.0]
    out = []
    for i in range(n):
        u = F(F(1) - F(F(i) / F(n)))
        s = F(F(u * u) * F(F(3) - F(F(2) * u)))
        out.append(t_to_sigma(math.floor(float(F(s * F(TIMESTEPS - 1))) + 0.5)))  # std::round, s >= 0
    return out + [0.0]


def kl_optimal(n: int) -> list:
    if n == 1:
        return [SIGMA_MAX, 0.0]
    a_min, a_max = math.atan(max(SIGMA_MIN, 1e-6)), math.atan(SIGMA_MAX)
    return [math.tan((i / (n - 1)) * a_min + (1 - i / (n - 1)) * a_max) for i in range(n)] + [0.0]


def lcm_schedule(n: int) -> list:
    k = TIMESTEPS // 50
    return [t_to_sigma((50 - (i * 50) // n) * k - 1) for i in range(n)] + [0.0]


def schedule(name: str, n: int, family: str = "sd1") -> list:
    return {
        "discrete": lambda: discrete(n),
        "karras": lambda: karras(n),
        "exponential": lambda: exponential(n),
        "ays": lambda: ays(n, family),
        "sgm_uniform": lambda: sgm_uniform(n),
        "simple": lambda: simple(n),
        "smoothstep": lambda: smoothstep(n),
        "kl_optimal": lambda: kl_optimal(n),
        "lcm": lambda: lcm_schedule(n),
    }[name]()


# ---- samplers (sd.cpp sample_* / k-diffusion), float64 -------------------------------------------


class Run:
    """The closed-form denoiser and the noise table, recording model calls and noise draws."""

    def __init__(self, mu: np.ndarray, s: float, noise: np.ndarray):
        self.mu, self.s, self.noise = mu, s, noise
        self.calls: list = []
        self.draws = 0

    def D(self, x: np.ndarray, sigma: float) -> np.ndarray:
        self.calls.append(float(sigma))
        s2 = self.s * self.s
        return (s2 * x + sigma * sigma * self.mu) / (s2 + sigma * sigma)

    def randn(self) -> np.ndarray:
        row = self.noise[self.draws].astype(np.float64)
        self.draws += 1
        return row


def ancestral_step(s_from: float, s_to: float, eta: float):
    """sd.cpp get_ancestral_step (k-diffusion's): returns (sigma_down, sigma_up)."""
    if eta <= 0:
        return s_to, 0.0
    up = 0.0
    if s_from * s_from > 0:
        up = min(s_to, eta * math.sqrt(max(s_to * s_to * (s_from * s_from - s_to * s_to) / (s_from * s_from), 0.0)))
    down_sq = s_to * s_to - up * up
    return (math.sqrt(down_sq) if down_sq > 0 else 0.0), up


def euler(r: Run, x, sig, eta):
    for i in range(len(sig) - 1):
        d = (x - r.D(x, sig[i])) / sig[i]
        x = x + d * (sig[i + 1] - sig[i])
    return x


def euler_ancestral(r: Run, x, sig, eta):
    """sd.cpp sample_euler_ancestral; ddim_trailing runs this too (with its own default eta, 0)."""
    for i in range(len(sig) - 1):
        sigma, to = sig[i], sig[i + 1]
        den = r.D(x, sigma)
        if to == 0:
            x = den
        elif eta == 0:
            ratio = to / sigma
            x = ratio * x + (1 - ratio) * den
        else:
            down, up = ancestral_step(sigma, to, eta)
            ratio = down / sigma
            x = ratio * x + (1 - ratio) * den
            if up > 0:
                x = x + r.randn() * up
    return x


def heun(r: Run, x, sig, eta):
    for i in range(len(sig) - 1):
        d = (x - r.D(x, sig[i])) / sig[i]
        dt = sig[i + 1] - sig[i]
        if sig[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - r.D(x2, sig[i + 1])) / sig[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def dpm2(r: Run, x, sig, eta):
    for i in range(len(sig) - 1):
        d = (x - r.D(x, sig[i])) / sig[i]
        if sig[i + 1] == 0:
            x = x + d * (sig[i + 1] - sig[i])
        else:
            mid = math.exp(0.5 * (math.log(sig[i]) + math.log(sig[i + 1])))
            x2 = x + d * (mid - sig[i])
            d2 = (x2 - r.D(x2, mid)) / mid
            x = x + d2 * (sig[i + 1] - sig[i])
    return x


def dpmpp_2s_ancestral(r: Run, x, sig, eta):
    for i in range(len(sig) - 1):
        den = r.D(x, sig[i])
        down, up = ancestral_step(sig[i], sig[i + 1], eta)
        if down == 0:
            x = den
        else:
            t, t_next = -math.log(sig[i]), -math.log(down)
            h = t_next - t
            sigma_s = math.exp(-(t + 0.5 * h))
            x2 = (sigma_s / sig[i]) * x - (math.exp(-0.5 * h) - 1) * den
            den2 = r.D(x2, sigma_s)
            x = (down / sig[i]) * x - (math.exp(-h) - 1) * den2
        if sig[i + 1] > 0:
            x = x + r.randn() * up  # drawn even when up is 0 (eta 0), as sd.cpp does
    return x


def dpmpp_2m(r: Run, x, sig, eta, v2=False):
    old = None
    for i in range(len(sig) - 1):
        den = r.D(x, sig[i])
        t, t_next = -math.log(sig[i]), (-math.log(sig[i + 1]) if sig[i + 1] > 0 else math.inf)
        h = t_next - t
        a = sig[i + 1] / sig[i]
        if i == 0 or sig[i + 1] == 0:
            x = a * x - (math.exp(-h) - 1) * den
        else:
            h_last = t + math.log(sig[i - 1])
            if v2:
                h_min, h_max = min(h_last, h), max(h_last, h)
                rr, b = h_max / h_min, math.exp(-(h_max + h_min) / 2) - 1
            else:
                rr, b = h_last / h, math.exp(-h) - 1
            den_d = (1 + 1 / (2 * rr)) * den - (1 / (2 * rr)) * old
            x = a * x - b * den_d
        old = den
    return x


def ipndm(r: Run, x, sig, eta, variable=False):
    hist: list = []
    for i in range(len(sig) - 1):
        d = (x - r.D(x, sig[i])) / sig[i]
        order = min(4, i + 1)
        h = sig[i + 1] - sig[i]
        if order == 1:
            x = x + d * h
        elif order == 2:
            if variable:
                q = h / (sig[i] - sig[i - 1])
                x = x + ((2 + q) * d - q * hist[-1]) / 2 * h
            else:
                x = x + (3 * d - hist[-1]) / 2 * h
        elif order == 3:
            x = x + (23 * d - 16 * hist[-1] + 5 * hist[-2]) / 12 * h
        else:
            x = x + (55 * d - 59 * hist[-1] + 37 * hist[-2] - 9 * hist[-3]) / 24 * h
        hist = (hist + [d])[-3:]
    return x


def lcm(r: Run, x, sig, eta):
    for i in range(len(sig) - 1):
        x = r.D(x, sig[i])
        if sig[i + 1] > 0:
            x = x + r.randn() * sig[i + 1]
    return x


def tcd(r: Run, x, sig, eta):
    """sd.cpp sample_tcd: its own alphas_cumprod (double product of float betas) and timestep lookup."""
    ls, le = math.sqrt(F(0.00085)), math.sqrt(F(0.012))
    ls, le = float(F(ls)), float(F(le))
    ac = []
    for i in range(TIMESTEPS):
        beta = float(F(F(ls) + F(F(F(le) - F(ls)) * F(F(i) / F(TIMESTEPS - 1)))))
        ac.append((1.0 if i == 0 else ac[-1]) * (1.0 - beta * beta))
    cs = [math.sqrt((1 - a) / a) for a in ac]

    def timestep_of(s: float) -> int:
        hi = int(np.searchsorted(cs, s, side="left"))  # std::lower_bound
        if hi == 0:
            return 0
        if hi == TIMESTEPS:
            return TIMESTEPS - 1
        return hi if abs(cs[hi] - s) < abs(cs[hi - 1] - s) else hi - 1

    for i in range(len(sig) - 1):
        sigma, to = sig[i], sig[i + 1]
        ts = math.floor((1 - eta) * timestep_of(to))
        den = r.D(x, sigma)
        d = (x - den) / sigma
        a_prev = 1 / (to * to + 1)
        a_s = ac[ts]
        x = math.sqrt(a_s / a_prev) * den + math.sqrt((1 - a_s) / a_prev) * d
        if eta > 0 and to > 0:
            x = math.sqrt(a_prev / a_s) * x + math.sqrt(1 / a_prev - 1 / a_s) * r.randn()
    return x


SAMPLERS = {
    "euler": euler,
    "euler_a": euler_ancestral,
    "heun": heun,
    "dpm2": dpm2,
    "dpm++2s_a": dpmpp_2s_ancestral,
    "dpm++2m": dpmpp_2m,
    "dpm++2mv2": lambda r, x, s, e: dpmpp_2m(r, x, s, e, v2=True),
    "ipndm": ipndm,
    "ipndm_v": lambda r, x, s, e: ipndm(r, x, s, e, variable=True),
    "lcm": lcm,
    "ddim_trailing": euler_ancestral,
    "tcd": tcd,
}

# sd.cpp resolve_eta: --eta left unset means 1 for the ancestral samplers, 0 for the others.
DEFAULT_ETA = {"euler_a": 1.0, "dpm++2s_a": 1.0}
# sd.cpp sd_get_default_scheduler for an SD 1.x/2.x model.
DEFAULT_SCHEDULER = {"lcm": "lcm", "tcd": "lcm", "ddim_trailing": "simple"}


def main() -> None:
    rng = np.random.default_rng(20261202)
    mu = np.round(np.linspace(-1.2, 0.9, N) + 0.1 * np.sin(np.arange(N)), 6)
    s_data = 0.5
    x_unit = rng.standard_normal(N).astype(np.float32)
    noise = rng.standard_normal((12, N)).astype(np.float32)

    schedules = []
    for name in ["discrete", "karras", "exponential", "sgm_uniform", "simple", "smoothstep", "kl_optimal", "lcm"]:
        for n in [1, 2, 3, 7, 10, 20]:
            schedules.append({"scheduler": name, "steps": n, "sigmas": schedule(name, n)})
    for family in ["sd1", "sdxl"]:
        for n in [1, 4, 10, 15]:
            schedules.append({"scheduler": "ays", "family": family, "steps": n, "sigmas": schedule("ays", n, family)})

    cases = []
    for method in SAMPLERS:
        etas = [DEFAULT_ETA.get(method, 0.0)]
        if method in ("euler_a", "dpm++2s_a", "ddim_trailing"):
            etas += [0.5, 0.0] if method != "ddim_trailing" else [1.0]
        if method == "tcd":
            etas += [0.3]
        runs = [(sch, n, eta) for eta in etas for (sch, n) in [(DEFAULT_SCHEDULER.get(method, "discrete"), 6)]]
        runs += [("karras", 8, etas[0]), ("exponential", 1, etas[0]), ("sgm_uniform", 3, etas[0])]
        for sch, n, eta in runs:
            sig = [float(F(v)) for v in schedule(sch, n)]  # the sampler gets float32 sigmas, as in sd.cpp
            x = (x_unit * F(sig[0])).astype(np.float32)  # noise_scaling: latent 0 + noise * sigma, in float
            r = Run(mu, s_data, noise)
            out = SAMPLERS[method](r, x.astype(np.float64), sig, eta)
            cases.append({
                "method": method, "eta": eta, "scheduler": sch, "steps": n, "sigmas": sig,
                "x": [float(v) for v in x], "out": [float(v) for v in out],
                "calls": r.calls, "draws": r.draws,
            })

    doc = {
        "source": "tools/sampler_reference.py: numpy float64 from stable-diffusion.cpp master-827 "
                  "src/runtime/denoiser.hpp and k-diffusion; timestep grids and alphas_cumprod in float32 as sd.cpp",
        "schedules": schedules,
        "denoiser": {"mu": [float(v) for v in mu], "s": s_data},
        "noise": [[float(v) for v in row] for row in noise],
        "samplers": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "models", "sampling", "testdata", "sampler_reference.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}: {len(schedules)} schedules, {len(cases)} sampler runs")


if __name__ == "__main__":
    main()
