#!/usr/bin/python3
"""Draws one picture of every caption form the demo grammar makes (scenes.py), for the judge's test:

    /usr/bin/python3 tools/train_demo/draw_examples.py OUT.rgb OUT.json

OUT.rgb: the pictures' RGB bytes one after another (128 x 128 x 3 each); OUT.json: their captions, in order.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402

scenes.set_size(128)  # the judge reads fractions of the side; 128 px keeps small shapes crisp
rng = np.random.default_rng(3)
captions, pictures = [], []
for size in ["small", "", "big"]:
    for colour in scenes.COLOURS:
        for shape in scenes.SHAPES:
            for position in list(scenes.POSITIONS) + [""]:
                background = [c for c in scenes.COLOURS if c != colour][rng.integers(len(scenes.COLOURS) - 1)]
                captions.append(scenes.shape_caption(size, colour, shape, position, background))
                pictures.append(scenes.draw_shape(rng, size, colour, shape, position, background))
for colour in scenes.COLOURS:
    for ground in scenes.GROUNDS:
        for sky in scenes.SKIES:
            if ground.startswith(colour + " ") or colour == sky:
                continue
            captions.append(scenes.scene_caption(colour, ground, sky))
            pictures.append(scenes.draw_scene(rng, colour, ground, sky))
with open(sys.argv[1], "wb") as f:
    f.write(np.stack(pictures).tobytes())
with open(sys.argv[2], "w") as f:
    json.dump(captions, f)
