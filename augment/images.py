"""Image augmentations: batched kornia pipelines (any device) and albumentations pipelines (CPU workers).

Two presets, both scaled by ``strength`` (1.0 = the usual SimCLR magnitudes, 0.0 = almost none):

* ``"standard"``: random resized crop, horizontal flip, colour jitter, random grayscale, Gaussian
  blur. Crops can cut out, and grayscale/hue jitter can erase, what a caption talks about.
* ``"unique"``: only transforms that keep what a caption can refer to (FactorCL, Eq. 4.18 and
  Fig. 4.4): horizontal flip and brightness/contrast/saturation jitter. No crop (it can remove
  the object or its context, e.g. the highway that says the car is fast), no grayscale and no hue
  shift (they change colour words: "a red car"), no blur (small text and fine detail). Captions
  that use "left"/"right" are not flip-invariant: drop the flip for such data.

kornia draws its random parameters from the global torch RNG and takes no generator. To make
:class:`ImageAugment` reproducible with a ``generator``, a seed is drawn from it and kornia runs
under a forked, seeded global RNG (:func:`augment.base.seeded_global_rng`); the caller's global
RNG state is restored afterwards.

kornia and albumentations come with the ``images`` extra (``pip install "factorcl[images]"``) and are
imported on first use, so the rest of :mod:`augment` works without them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._extras import require
from .base import Augmentation, check_floating, check_number, check_rank, seeded_global_rng, shape_str

__all__ = ["ImageAugment", "albumentations_pipeline", "PRESETS"]

PRESETS = ("standard", "unique")
_MAX_STRENGTH = 2.0
_CPU_CHUNK = 32  # images per kornia call on CPU (see ImageAugment.forward)
_RANGE_TOLERANCE = 1e-3  # how far outside [0, 1] an input may stray (resize overshoot, rounding) before it is refused


def _check_preset(preset: object) -> str:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    return str(preset)


def _check_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, bool):
        raise ValueError(f"size must be an int, an (H, W) pair or None, got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = size  # type: ignore[misc]
        h, w = int(h), int(w)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int, an (H, W) pair or None, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _magnitudes(strength: float) -> dict[str, Any]:
    """The preset parameters at a given strength (shared by the kornia and albumentations builds)."""
    s = strength
    return {
        # At s=1: SimCLR crop scale (0.08, 1) and aspect ratio (3/4, 4/3); at s=0: the full image.
        "crop_scale": (max(0.08, 1.0 - 0.92 * s), 1.0),
        "crop_ratio": (1.0 - 0.25 * min(s, 1.0), 1.0 / (1.0 - 0.25 * min(s, 1.0))),
        "brightness": min(0.4 * s, 0.9),
        "contrast": min(0.4 * s, 0.9),
        "saturation": min(0.4 * s, 0.9),
        "hue": min(0.1 * s, 0.5),
        # Milder jitter for "unique": a strongly darkened orange reads as brown, a strongly
        # desaturated red no longer as red.
        "unique_brightness": min(0.3 * s, 0.9),
        "unique_contrast": min(0.3 * s, 0.9),
        "unique_saturation": min(0.2 * s, 0.9),
        "jitter_p": 0.8,
        "gray_p": min(0.2 * s, 1.0),
        "blur_sigma": (0.1, max(0.1, 2.0 * s)),
        "blur_p": 0.5,
    }


def _blur_kernel(h: int, w: int) -> int:
    # SimCLR: kernel about 10% of the image side, odd.
    k = max(3, int(0.1 * min(h, w)))
    return k if k % 2 == 1 else k + 1


class ImageAugment(Augmentation):
    """Batched image augmentation ``[B, 3, H, W]`` float images in [0, 1], on the images' device (kornia).

    ``size=None`` keeps the input size; ``size=(H', W')`` (or an int) makes every output
    ``[B, 3, H', W']`` (random resized crop for ``"standard"``, plain resize for ``"unique"``).
    Each sample gets its own random parameters. Inputs outside [0, 1] (beyond a rounding
    tolerance: e.g. [0, 255] images) are refused, since the output is clamped to [0, 1]. Outputs
    keep the input dtype (half-precision inputs are processed in float32). On CPU large batches
    are processed in chunks of 32 images (faster; kornia is mainly meant for GPU batches,
    albumentations in data-loader workers is usually faster on CPU).
    """

    uses_cond = False

    def __init__(
        self, preset: str = "standard", strength: float = 1.0, size: int | tuple[int, int] | None = None
    ) -> None:
        self.preset = _check_preset(preset)
        self.strength = check_number(strength, "strength", low=0.0, high=_MAX_STRENGTH)
        self.size = _check_size(size)
        self._pipelines: dict[tuple[int, int], Any] = {}

    def _check_input(self, x: Any) -> None:
        super()._check_input(x)
        check_rank(x, self.input_name, (4,), "[B, 3, H, W]")
        if x.shape[1] != 3:
            raise ValueError(f"{self.input_name} must be [B, 3, H, W] RGB images, got shape {shape_str(x.shape)}")
        check_floating(x, self.input_name)
        lo, hi = torch.aminmax(x.detach())
        if bool((lo < -_RANGE_TOLERANCE) | (hi > 1.0 + _RANGE_TOLERANCE)):  # one device sync for both ends
            hint = "; divide [0, 255] images by 255" if float(hi) > 1.5 else ""
            raise ValueError(
                f"{self.input_name} must be float images with values in [0, 1], got min {float(lo):.4g} "
                f"max {float(hi):.4g}{hint}"
            )

    def _pipeline(self, h: int, w: int) -> Any:
        key = (h, w)
        if key not in self._pipelines:
            self._pipelines[key] = self._build(h, w)
        return self._pipelines[key]

    def _build(self, h: int, w: int) -> Any:
        K = require("kornia.augmentation", "images", "augment.ImageAugment")

        m = _magnitudes(self.strength)
        out_size = self.size or (h, w)
        ops: list[Any] = []
        if self.preset == "standard":
            ops += [
                K.RandomResizedCrop(out_size, scale=m["crop_scale"], ratio=m["crop_ratio"]),
                K.RandomHorizontalFlip(p=0.5),
                K.ColorJitter(m["brightness"], m["contrast"], m["saturation"], m["hue"], p=m["jitter_p"]),
                K.RandomGrayscale(p=m["gray_p"]),
                K.RandomGaussianBlur(_blur_kernel(*out_size), m["blur_sigma"], p=m["blur_p"]),
            ]
        else:
            if self.size is not None and self.size != (h, w):
                ops.append(K.Resize(self.size))
            ops += [
                K.RandomHorizontalFlip(p=0.5),
                K.ColorJitter(
                    m["unique_brightness"], m["unique_contrast"], m["unique_saturation"], 0.0, p=m["jitter_p"]
                ),
            ]
        return K.AugmentationSequential(*ops, data_keys=["input"])

    def forward(self, x: Tensor, *, cond: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        with seeded_global_rng(generator, x.device):
            # Built inside the block: building kornia modules can draw from the global RNG.
            pipeline = self._pipeline(int(x.shape[2]), int(x.shape[3]))
            if x.device.type == "cpu" and x.shape[0] > _CPU_CHUNK:
                # On CPU, chunks whose intermediates stay in reused memory run about twice as
                # fast as one pass over a large batch (page faults and cache misses dominate).
                out = torch.cat([pipeline(work[i : i + _CPU_CHUNK]) for i in range(0, x.shape[0], _CPU_CHUNK)])
            else:
                out = pipeline(work)
        if out.data_ptr() == x.data_ptr():  # never hand back (a view of) the caller's tensor
            out = out.clone()
        return out.clamp_(0.0, 1.0).to(x.dtype)

    def _repr_params(self) -> dict[str, Any]:
        return {"preset": self.preset, "strength": self.strength, "size": self.size}


def albumentations_pipeline(
    preset: str = "standard",
    strength: float = 1.0,
    size: int | tuple[int, int] | None = None,
    seed: int | None = None,
) -> Any:
    """The same preset as an ``albumentations.Compose`` for one HWC uint8 RGB numpy image.

    For CPU data-loader workers: ``pipeline(image=img)["image"]``. ``"standard"`` needs ``size``
    (albumentations' random resized crop has a fixed output size); ``"unique"`` keeps the input
    size unless ``size`` is given. ``seed`` makes the pipeline reproducible (albumentations' own
    seeding: each worker should use a different seed).
    """
    A = require("albumentations", "images", "augment.albumentations_pipeline")

    preset = _check_preset(preset)
    strength = check_number(strength, "strength", low=0.0, high=_MAX_STRENGTH)
    out_size = _check_size(size)
    m = _magnitudes(strength)
    ops: list[Any] = []
    if preset == "standard":
        if out_size is None:
            raise ValueError("size is required for preset 'standard' (the random resized crop needs an output size)")
        k = _blur_kernel(*out_size)
        ops += [
            A.RandomResizedCrop(size=out_size, scale=m["crop_scale"], ratio=m["crop_ratio"]),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(
                brightness=m["brightness"],
                contrast=m["contrast"],
                saturation=m["saturation"],
                hue=m["hue"],
                p=m["jitter_p"],
            ),
            A.ToGray(p=m["gray_p"]),
            A.GaussianBlur(blur_limit=(k, k), sigma_limit=m["blur_sigma"], p=m["blur_p"]),
        ]
    else:
        if out_size is not None:
            ops.append(A.Resize(*out_size))
        ops += [
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(
                brightness=m["unique_brightness"],
                contrast=m["unique_contrast"],
                saturation=m["unique_saturation"],
                hue=0.0,
                p=m["jitter_p"],
            ),
        ]
    kwargs: dict[str, Any] = {} if seed is None else {"seed": int(seed)}
    return A.Compose(ops, **kwargs)
