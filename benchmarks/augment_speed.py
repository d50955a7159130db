"""Speed of the vectorised augmentations against per-sample Python loops.

1. Sequences ``[B, T, D]`` (default ``[256, 50, 300]``): each augmentation of :mod:`augment.features`
   against the per-sample loop of the published FactorCL reference code (``permute`` / ``noise`` /
   ``drop`` applied to one ``[T, D]`` sample at a time, and ``augment_single``: one of
   permute/noise/drop/identity chosen per sample), which the vectorised
   ``RandomChoice([TimeShuffle, GaussianNoise, TimeMask, Identity])`` replaces.
2. Images: kornia batch (:class:`augment.ImageAugment`, float ``[B, 3, H, W]``) against an
   albumentations per-sample loop over HWC uint8 numpy images (:func:`augment.albumentations_pipeline`),
   both on CPU, for both presets.

Times are medians over repeats after warm-up, in ms per batch; speedup = loop time / vectorised
time. ``--device cuda`` runs the sequence part on a GPU (the reference loop then launches small
kernels per sample, as the published code did). Both sides run with the same number of CPU threads
(``--threads``, default 1, also applied to OpenCV) so the comparison is per core and stable on a
shared machine. Timing, tables and JSON are :mod:`_common`'s.

Usage: ``python benchmarks/augment_speed.py [--quick] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import functools
import platform
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import augment

if __package__:  # imported as benchmarks.augment_speed (see benchmarks/__init__.py)
    from . import _common
else:  # run as python benchmarks/augment_speed.py: this folder is sys.path[0]
    import _common

# ---------------------------------------------------------------------------------------------
# The per-sample reference (as in the published FactorCL code: one [T, D] sample at a time)
# ---------------------------------------------------------------------------------------------


def ref_permute(x: torch.Tensor) -> torch.Tensor:
    idx = torch.randperm(x.shape[0])
    return x[idx]


def ref_noise(x: torch.Tensor) -> torch.Tensor:
    noise = torch.randn(x.shape) * 0.1
    return x + noise.to(x.device)


def ref_drop(x: torch.Tensor) -> torch.Tensor:
    drop_num = x.shape[0] // 5
    x_aug = torch.clone(x)
    drop_idxs = np.random.choice(x.shape[0], drop_num, replace=False)
    x_aug[drop_idxs] = 0.0
    return x_aug


def ref_identity(x: torch.Tensor) -> torch.Tensor:
    return x


def ref_loop(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x_batch: torch.Tensor) -> torch.Tensor:
        out = torch.clone(x_batch)
        for i in range(x_batch.shape[0]):
            out[i] = fn(out[i])
        return out

    return run


def ref_augment_single(x_batch: torch.Tensor) -> torch.Tensor:
    out = torch.clone(x_batch)
    transforms = [ref_permute, ref_noise, ref_drop, ref_identity]
    for i in range(x_batch.shape[0]):
        t = transforms[np.random.choice(4, 1, replace=False)[0]]
        out[i] = t(out[i])
    return out


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int, device: str = "cpu") -> float:
    """The median of :func:`_common.time_fn` (ms per call)."""
    return _common.time_fn(fn, device, warmup=warmup, repeats=repeats)["median_ms"]


def bench_sequences(shape: Sequence[int], repeats: int, warmup: int, device: str = "cpu") -> list[dict[str, Any]]:
    x = torch.randn(*shape).to(device)
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("time shuffle (permute)", ref_loop(ref_permute), augment.TimeShuffle()),
        ("gaussian noise std 0.1", ref_loop(ref_noise), augment.GaussianNoise(0.1)),
        ("time mask 20% (drop)", ref_loop(ref_drop), augment.TimeMask(p=0.2)),
        (
            "random choice per sample",
            ref_augment_single,
            augment.RandomChoice(
                [augment.TimeShuffle(), augment.GaussianNoise(0.1), augment.TimeMask(p=0.2), augment.Identity()]
            ),
        ),
    ]
    rows = []
    for name, loop, vec in cases:
        loop_ms = median_ms(functools.partial(loop, x), repeats, warmup, device)
        vec_ms = median_ms(functools.partial(vec, x, generator=gen), repeats, warmup, device)
        rows.append({"name": name, "loop_ms": loop_ms, "vectorised_ms": vec_ms, "speedup": loop_ms / vec_ms})
    return rows


def per_sample(pipeline: Callable[..., dict[str, Any]], images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """An albumentations pipeline applied to one HWC uint8 image at a time."""
    return [pipeline(image=im)["image"] for im in images]


def bench_images(n: int, size: int, repeats: int, warmup: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    # Smooth random images (a gradient plus noise): realistic enough for blur/jitter costs.
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None] + ramp[:, None, None]) / 2
    images = [np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255).contiguous()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for preset in augment.PRESETS:
        kornia_aug = augment.ImageAugment(preset, size=size)
        albu = augment.albumentations_pipeline(preset, size=size, seed=0)
        kornia_ms = median_ms(functools.partial(kornia_aug, batch, generator=gen), repeats, warmup)
        albu_ms = median_ms(functools.partial(per_sample, albu, images), repeats, warmup)
        rows.append(
            {
                "preset": preset,
                "kornia_ms": kornia_ms,
                "albumentations_ms": albu_ms,
                "kornia_speedup": albu_ms / kornia_ms,
            }
        )
    return rows


#: On a GPU the per-sample loop launches a few kernels per sample; one batched call should beat it by this much.
GPU_TARGET = 20.0


def sequence_checks(rows: Sequence[dict[str, Any]], device: str) -> list[str]:
    """PASS/FAIL lines: the vectorised path is never slower than the loop (>= GPU_TARGET x on a GPU)."""
    target = GPU_TARGET if torch.device(device).type == "cuda" else 1.0
    return [
        _common.check_line(
            r["speedup"] >= target, f"{r['name']}: vectorised >= {target:g}x the per-sample loop ({r['speedup']:.2f}x)"
        )
        for r in rows
    ]


def format_result(result: dict[str, Any]) -> str:
    """The two tables (sequences, images), each under a line that says what was measured."""
    cfg = result["config"]
    b, t, d = cfg["sequence_shape"]
    sequences = _common.format_table(
        ["augmentation", "per-sample loop", "vectorised", "speedup"],
        [[r["name"], r["loop_ms"], r["vectorised_ms"], f"{r['speedup']:.1f}x"] for r in result["sequences"]],
    )
    n, s = cfg["images"], cfg["image_size"]
    images = _common.format_table(
        ["preset", "kornia batch", "albumentations loop", "kornia speedup"],
        [
            [r["preset"], r["kornia_ms"], r["albumentations_ms"], f"{r['kornia_speedup']:.2f}x"]
            for r in result["images"]
        ],
        floatfmt=".1f",
    )
    seq_title = (
        f"Sequences [{b}, {t}, {d}] on {cfg['sequence_device']} ({cfg['threads']} CPU thread(s)), "
        f"median ms per batch over {cfg['repeats']} repeats"
    )
    img_title = (
        f"Images: {n} RGB {s}x{s} on CPU ({cfg['threads']} thread(s)), median ms per batch "
        f"over {cfg['image_repeats']} repeats"
    )
    return "\n".join([seq_title, sequences, "", img_title, images])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    parser.add_argument("--out", type=str, default=None, help="write the results as JSON to this file")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and OpenCV (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument(
        "--device", type=str, default="cpu", help="device for the sequence benchmark (images always run on CPU)"
    )
    args = parser.parse_args(argv)

    # Same thread count on both sides; restored afterwards (main() is also called from tests).
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    cv2 = None
    try:
        import cv2  # type: ignore[no-redef]

        previous_cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(args.threads)
    except ImportError:  # albumentations normally brings OpenCV; the timing still runs without it
        pass
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous_threads)
        if cv2 is not None:
            cv2.setNumThreads(previous_cv2_threads)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    np.random.seed(0)

    if args.quick:
        # 15 repeats, not 3: at these sizes a call takes about a millisecond, and the median of 3 on
        # a busy machine once read 0.7x for GaussianNoise, which 30 quiet repeats put at 1.2x.
        seq_shape, n_img, img_size = (32, 50, 300), 8, 64
        repeats, img_repeats, warmup = args.repeats or 15, args.repeats or 3, 2
    else:
        seq_shape, n_img, img_size = (256, 50, 300), 256, 224
        repeats, img_repeats, warmup = args.repeats or 30, args.repeats or 5, 2

    result: dict[str, Any] = {
        "config": {
            "quick": args.quick,
            "sequence_shape": list(seq_shape),
            "images": n_img,
            "image_size": img_size,
            "repeats": repeats,
            "image_repeats": img_repeats,
            "warmup": warmup,
            "threads": args.threads,
            "sequence_device": args.device,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "sequences": bench_sequences(seq_shape, repeats, warmup, args.device),
        "images": bench_images(n_img, img_size, img_repeats, warmup),
    }
    result["checks"] = sequence_checks(result["sequences"], args.device)
    print(format_result(result))
    print("\n".join(result["checks"]))
    if args.out:
        _common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
