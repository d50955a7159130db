"""A picture of what the ``standard`` and ``unique`` image presets do to captioned images.

Draws a few synthetic captioned scenes (no downloads), augments each with
:class:`augment.ImageAugment` under both presets, and saves a PNG grid: one row per scene with the
original, three ``standard`` views and three ``unique`` views, the caption under the row.
``standard`` crops, greys, blurs and shifts hue, so a view can lose what the caption mentions (the
road that says the car is fast, the colour of the ball); ``unique`` only flips and jitters
brightness/contrast/saturation, so every view still matches its caption (FactorCL, Fig. 4.4).

Usage: ``python benchmarks/augment_gallery.py [--out augment_gallery.png] [--seed 0]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

import augment

SIZE = 160


def _canvas(top: Sequence[float], bottom: Sequence[float] | None = None) -> np.ndarray:
    """An RGB float image in [0, 1], vertical gradient from ``top`` to ``bottom``."""
    bottom = top if bottom is None else bottom
    t = np.linspace(0.0, 1.0, SIZE)[:, None, None]
    img = (1 - t) * np.asarray(top, dtype=np.float64) + t * np.asarray(bottom, dtype=np.float64)
    return np.broadcast_to(img, (SIZE, SIZE, 3)).copy()


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)


def _disc(img: np.ndarray, cy: float, cx: float, r: float, colour: Sequence[float]) -> None:
    yy, xx = _grid()
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour


def _rect(img: np.ndarray, y0: int, y1: int, x0: int, x1: int, colour: Sequence[float]) -> None:
    img[y0:y1, x0:x1] = colour


def draw_scenes() -> list[tuple[np.ndarray, str]]:
    """Synthetic (image HWC float in [0, 1], caption) pairs."""
    scenes = []

    # 1. A fast red car on a highway: the road and its lane markings carry "fast" / "highway".
    img = _canvas((0.45, 0.7, 0.95), (0.75, 0.88, 1.0))
    _rect(img, 95, SIZE, 0, SIZE, (0.32, 0.32, 0.34))  # asphalt
    for x0 in range(5, SIZE, 36):
        _rect(img, 128, 133, x0, x0 + 20, (0.97, 0.97, 0.9))  # lane markings
    _rect(img, 88, 95, 0, SIZE, (0.55, 0.55, 0.55))  # guard rail
    _rect(img, 96, 116, 52, 128, (0.85, 0.08, 0.08))  # car body
    _rect(img, 84, 98, 68, 108, (0.7, 0.05, 0.05))  # cabin
    _rect(img, 87, 96, 74, 102, (0.6, 0.8, 0.95))  # windows
    _disc(img, 117, 68, 8, (0.08, 0.08, 0.08))
    _disc(img, 117, 114, 8, (0.08, 0.08, 0.08))
    for k, y in enumerate((100, 106, 112)):  # speed lines behind the car
        _rect(img, y, y + 2, 20 + 6 * k, 46, (0.9, 0.9, 0.9))
    scenes.append((img, "a fast red car on the highway"))

    # 2. A red ball on a blue background: the colour words are what the caption refers to.
    img = _canvas((0.15, 0.3, 0.75), (0.1, 0.18, 0.5))
    _disc(img, 80, 80, 34, (0.9, 0.1, 0.1))
    _disc(img, 68, 68, 9, (1.0, 0.55, 0.55))  # highlight
    scenes.append((img, "a red ball on a blue background"))

    # 3. Two objects: a crop easily removes one of them.
    img = _canvas((0.93, 0.93, 0.88))
    _rect(img, 20, 62, 14, 56, (1.0, 0.6, 0.0))  # orange square, top-left
    yy, xx = _grid()
    tri = (yy > 95) & (yy < 150) & (np.abs(xx - 120) < (yy - 95) * 0.6)
    img[tri] = (0.1, 0.6, 0.2)  # green triangle, bottom-right
    scenes.append((img, "an orange square and a green triangle"))

    # 4. A yellow sun over the sea: small object at the border plus a colour word.
    img = _canvas((0.98, 0.6, 0.35), (0.95, 0.8, 0.55))
    _rect(img, 100, SIZE, 0, SIZE, (0.05, 0.35, 0.6))
    for y in range(108, SIZE, 12):
        _rect(img, y, y + 2, 10, SIZE - 10, (0.3, 0.55, 0.8))  # waves
    _disc(img, 46, 118, 20, (1.0, 0.9, 0.1))
    scenes.append((img, "a yellow sun setting over the sea"))
    return scenes


def render(out: str, seed: int = 0, views: int = 3) -> str:
    """Augments the scenes and writes the PNG grid to ``out``; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = draw_scenes()
    batch = torch.from_numpy(np.stack([img for img, _ in scenes])).permute(0, 3, 1, 2).float()
    gen = torch.Generator().manual_seed(seed)
    standard = augment.ImageAugment("standard")
    unique = augment.ImageAugment("unique")
    std_views = [standard(batch, generator=gen) for _ in range(views)]
    uniq_views = [unique(batch, generator=gen) for _ in range(views)]

    cols = 1 + 2 * views
    rows = len(scenes)
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols + 0.3, 2.15 * rows + 0.9), squeeze=False)
    fig.subplots_adjust(
        left=0.02, right=0.98, top=1 - 0.95 / (2.15 * rows + 0.9), bottom=0.04, wspace=0.06, hspace=0.42
    )
    titles = ["original"] + [f"standard #{i + 1}" for i in range(views)] + [f"unique #{i + 1}" for i in range(views)]
    for r, (_, caption) in enumerate(scenes):
        row = [batch[r]] + [v[r] for v in std_views] + [v[r] for v in uniq_views]
        for c, im in enumerate(row):
            ax = axes[r, c]
            ax.imshow(im.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "black" if c == 0 else ("#b03a2e" if c <= views else "#1e8449")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3.0 if c else 1.0)
            if r == 0:
                ax.set_title(titles[c], fontsize=10, color=colour)
        # The caption under the row, centred across the figure.
        box = axes[r, 0].get_position()
        fig.text(
            0.5, box.y0 - 0.008, f"caption: \u201c{caption}\u201d", ha="center", va="top", fontsize=11, style="italic"
        )
    fig.suptitle(
        "standard augmentation (red) can crop out, grey out or recolour what the caption mentions;\n"
        "unique augmentation (green) only flips and jitters brightness/contrast/saturation, so it keeps it",
        fontsize=11,
        y=1 - 0.12 / (2.15 * rows + 0.9),
    )
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=str, default="augment_gallery.png", help="output PNG path")
    parser.add_argument("--seed", type=int, default=0, help="generator seed for the augmentations")
    parser.add_argument("--views", type=int, default=3, help="augmented views per preset")
    args = parser.parse_args(argv)
    path = render(args.out, seed=args.seed, views=args.views)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
