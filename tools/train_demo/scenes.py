"""Procedural captioned pictures for the demo model: one coloured shape on a coloured background, or a ball
in a simple landscape (ground under a sky). Every picture is drawn from its attributes, and its caption says
them in words, so the vocabulary below is exactly what the trained model understands.

Prompts the model knows (any subset of the optional words, in this order):

    a [small|big] <colour> <shape> [on the left|on the right|at the top|at the bottom|in the middle]
      on a <colour> background
    a <colour> ball on <green grass|yellow sand|white snow> under a <blue|gray|orange|black> sky

    ("an" before a vowel: "an orange star on a blue background")

    colours: red green blue yellow orange purple pink white black gray brown cyan
    shapes:  circle (also "ball") square triangle star

Without a size word the shape is of medium size; without a position it may be anywhere.
"""

import hashlib

import numpy as np

SIZE = 64  # the picture side the demo model is trained at; set_size() changes it


def set_size(side):
    global SIZE
    SIZE = side

COLOURS = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (245, 215, 30),
    "orange": (250, 127, 14),
    "purple": (128, 50, 170),
    "pink": (247, 140, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "brown": (120, 72, 30),
    "cyan": (30, 200, 215),
}
SHAPES = ["circle", "square", "triangle", "star"]
# Diameter of the shape as a fraction of the picture side.
SIZES = {"small": 0.22, "": 0.36, "big": 0.56}
# Centre of the shape as fractions (x, y) of the picture side.
POSITIONS = {
    "on the left": (0.27, 0.5),
    "on the right": (0.73, 0.5),
    "at the top": (0.5, 0.27),
    "at the bottom": (0.5, 0.73),
    "in the middle": (0.5, 0.5),
}
GROUNDS = {"green grass": COLOURS["green"], "yellow sand": (230, 200, 110), "white snow": COLOURS["white"]}
SKIES = {"blue": (110, 170, 235), "gray": (150, 155, 160), "orange": (250, 150, 60), "black": (15, 15, 35)}
HORIZON = 0.55


def is_held_out(caption):
    """About one caption in ten never appears in training: the test prompts come from these."""
    return hashlib.sha256(caption.encode()).digest()[0] % 10 == 0


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def shape_caption(size, colour, shape, position, background, shape_word=None):
    first = size or colour
    words = [article(first)]
    if size:
        words.append(size)
    words += [colour, shape_word or shape]
    if position:
        words.append(position)
    words += ["on", article(background), background, "background"]
    return " ".join(words)


def scene_caption(colour, ground, sky):
    return f"{article(colour)} {colour} ball on {ground} under {article(sky)} {sky} sky"


def _polygon_mask(xs, ys, pts):
    """Inside test for a convex or star polygon by the even-odd rule (pts: list of (x, y))."""
    inside = np.zeros(xs.shape, dtype=bool)
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        cond = (y1 > ys) != (y2 > ys)
        xcross = (x2 - x1) * (ys - y1) / (y2 - y1 + 1e-12) + x1
        inside ^= cond & (xs < xcross)
    return inside


def shape_mask(shape, cx, cy, d, angle, ss=4):
    """Anti-aliased coverage in [0, 1] of a shape of diameter d (pixels) centred at (cx, cy); sampled
    ss x ss times per pixel, only inside the shape's bounding box."""
    r = d / 2
    x0, y0 = max(0, int(cx - r) - 1), max(0, int(cy - r) - 1)
    x1, y1 = min(SIZE, int(cx + r) + 2), min(SIZE, int(cy + r) + 2)
    xs, ys = np.meshgrid(x0 + (np.arange((x1 - x0) * ss) + 0.5) / ss, y0 + (np.arange((y1 - y0) * ss) + 0.5) / ss)
    if shape == "circle":
        m = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    elif shape == "square":
        h = r * 0.85
        m = (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    elif shape == "triangle":
        pts = [(cx + r * np.sin(angle + k * 2 * np.pi / 3), cy - r * np.cos(angle + k * 2 * np.pi / 3)) for k in range(3)]
        m = _polygon_mask(xs, ys, pts)
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = angle + k * np.pi / 5
            pts.append((cx + rr * np.sin(a), cy - rr * np.cos(a)))
        m = _polygon_mask(xs, ys, pts)
    else:
        raise ValueError(shape)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[y0:y1, x0:x1] = m.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))
    return out


def _jitter(rng, rgb, amount=12):
    return np.clip(np.array(rgb, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _shade(rng, img):
    """A soft light gradient and a little noise, so flat colours are not the only thing the model sees."""
    g = rng.uniform(-0.08, 0.08, 2)
    c = (np.arange(SIZE) / SIZE - 0.5)
    light = 1 + g[0] * c[None, :, None] + g[1] * c[:, None, None]
    return np.clip(img * light + rng.normal(0, 2.0, img.shape), 0, 255)


def draw_shape(rng, size, colour, shape, position, background):
    bg = _jitter(rng, COLOURS[background])
    fg = _jitter(rng, COLOURS[colour])
    d = SIZES[size] * SIZE * rng.uniform(0.9, 1.1)
    if position:
        fx, fy = POSITIONS[position]
        j = 5 * SIZE / 128
        cx, cy = fx * SIZE + rng.uniform(-j, j), fy * SIZE + rng.uniform(-j, j)
    else:
        lo, hi = d / 2 + SIZE / 64, SIZE - d / 2 - SIZE / 64
        cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
    angle = rng.uniform(-0.25, 0.25)
    m = shape_mask(shape, cx, cy, d, angle)[:, :, None]
    img = bg[None, None, :] * (1 - m) + fg[None, None, :] * m
    return _shade(rng, img).astype(np.uint8)


def draw_scene(rng, colour, ground, sky):
    sky_rgb, ground_rgb = _jitter(rng, SKIES[sky]), _jitter(rng, GROUNDS[ground])
    horizon = int(SIZE * (HORIZON + rng.uniform(-0.05, 0.05)))
    img = np.empty((SIZE, SIZE, 3), dtype=np.float32)
    img[:horizon] = sky_rgb
    img[horizon:] = ground_rgb
    d = SIZES[""] * SIZE * rng.uniform(0.85, 1.15)
    cx = rng.uniform(d / 2 + SIZE / 32, SIZE - d / 2 - SIZE / 32)
    cy = horizon + rng.uniform(-0.1, 0.25) * d
    m = shape_mask("circle", cx, cy, d, 0.0)[:, :, None]
    img = img * (1 - m) + _jitter(rng, COLOURS[colour])[None, None, :] * m
    return _shade(rng, img).astype(np.uint8)


def sample(rng, allow_held_out=False):
    """One (picture [SIZE, SIZE, 3] uint8, caption) pair; held-out captions are redrawn unless allowed."""
    while True:
        if rng.random() < 0.2:
            colour = rng.choice(list(COLOURS))
            ground, sky = rng.choice(list(GROUNDS)), rng.choice(list(SKIES))
            if ground.startswith(colour + " ") or colour == sky:
                continue
            caption = scene_caption(colour, ground, sky)
            if allow_held_out or not is_held_out(caption):
                return draw_scene(rng, colour, ground, sky), caption
            continue
        colour, background = rng.choice(list(COLOURS), 2, replace=False)
        shape = rng.choice(SHAPES)
        size = rng.choice(["small", "", "big"]) if rng.random() < 0.75 else ""
        position = rng.choice(list(POSITIONS)) if rng.random() < 0.75 else ""
        if size == "big" and position in ("on the left", "on the right", "at the top", "at the bottom"):
            position = position if rng.random() < 0.5 else ""
        word = "ball" if shape == "circle" and rng.random() < 0.3 else None
        caption = shape_caption(size, colour, shape, position, background, word)
        if allow_held_out or not is_held_out(caption):
            return draw_shape(rng, size, colour, shape, position, background), caption
