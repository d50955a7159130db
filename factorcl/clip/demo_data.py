"""A small generated image-caption dataset in which the image holds more than the caption says.

Each image shows two coloured shapes (circle, square or triangle), one on the left and one on the
right, on a coloured background. The caption always describes one of them ("a red circle") and
only sometimes the other. The label is the *shape of the other object*: the image always shows
it, the caption states it in about ``mention_prob`` of the rows. So caption features alone cap
the probe's accuracy while the image's unique information lifts it, the setting FactorCL's unique
terms are for. Captions never say "left"/"right", so horizontal flips keep them true.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

__all__ = ["COLORS", "SHAPES", "write_demo_dataset"]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 170),
    "orange": (240, 140, 30),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
    "beige": (225, 210, 180),
}
_ONE = ("a {c} {s}", "a photo of a {c} {s}", "there is a {c} {s}", "a picture with a {c} {s}")
_TWO = ("a {c} {s} and a {c2} {s2}", "a photo of a {c} {s} next to a {c2} {s2}", "a {c} {s} with a {c2} {s2}")


def _draw(draw, shape: str, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=color)


def write_demo_dataset(
    folder: str | os.PathLike,
    n: int = 200,
    seed: int = 0,
    image_size: int = 64,
    mention_prob: float = 0.5,
) -> Path:
    """Write ``n`` PNG images and ``captions.csv`` into ``folder``; returns the CSV path.

    The CSV's columns are ``image``, ``caption`` and ``label``.

    Deterministic for a ``seed``. ``label`` is a shape name (see the module docstring);
    ``mentioned`` (1/0) says whether the caption names it, ``background`` is never in a caption.
    """
    from PIL import Image, ImageDraw

    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if not 0.0 <= float(mention_prob) <= 1.0:
        raise ValueError(f"mention_prob must be in [0, 1], got {mention_prob}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    size = int(image_size)
    rows = []
    for i in range(int(n)):
        bg_name = rng.choice(list(BACKGROUNDS))
        colors = rng.sample(list(COLORS), 2)
        shapes = [rng.choice(SHAPES), rng.choice(SHAPES)]
        img = Image.new("RGB", (size, size), BACKGROUNDS[bg_name])
        draw = ImageDraw.Draw(img)
        half = size // 2
        for side, (shape, color) in enumerate(zip(shapes, colors)):
            s = rng.randint(int(0.45 * half), int(0.8 * half))  # object size
            x0 = side * half + rng.randint(1, max(1, half - s - 1))
            y0 = rng.randint(1, max(1, size - s - 1))
            _draw(draw, shape, (x0, y0, x0 + s, y0 + s), COLORS[color])
        described = rng.randrange(2)  # the object the caption always describes
        other = 1 - described
        mentioned = rng.random() < mention_prob
        if mentioned:
            caption = rng.choice(_TWO).format(
                c=colors[described], s=shapes[described], c2=colors[other], s2=shapes[other]
            )
        else:
            caption = rng.choice(_ONE).format(c=colors[described], s=shapes[described])
        name = f"images/{i:05d}.png"
        img.save(folder / name)
        rows.append(
            {
                "image": name,
                "caption": caption,
                "label": shapes[other],
                "mentioned": int(mentioned),
                "background": bg_name,
            }
        )
    path = folder / "captions.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "caption", "label", "mentioned", "background"])
        writer.writeheader()
        writer.writerows(rows)
    return path
