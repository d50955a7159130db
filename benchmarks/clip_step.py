"""Training throughput and peak GPU memory: one FactorCL-SSL step vs one plain CLIP-loss step on the same CLIP.

Both steps start from the same randomly initialised open_clip model (no weights are downloaded),
batch of ``B`` image-caption pairs already on the device (images float [B, 3, H, W] in [0, 1],
captions tokenized with the model's tokenizer):

- ``clip``: the image tower (with CLIP's normalisation) and the text tower, open_clip's
  ``ClipLoss`` on the normalised embeddings with the model's ``logit_scale``, backward, AdamW step;
- ``factorcl-ssl``: :func:`factorcl.clip.build_clip_factorcl` (``shared_critic="clip"``, text
  token deletion, image ``--image-aug``): ``model.loss(batch)`` (views made on device, towers run
  on [x, x'] of each modality), backward, AdamW step, then one NCE-CLUB critic step
  (``model.critic_loss()``) with its own AdamW, as :func:`factorcl.fit` does per step.

Time is the median over ``--repeats`` steps after ``--warmup`` steps (CUDA synchronised); pairs/s =
B / median step time. Peak memory is ``torch.cuda.max_memory_allocated()`` over the timed steps
(weights, gradients and optimizer states included; same model for both, so the difference is the
step's own cost). Target: FactorCL step time / CLIP step time <= 2.3.

Full mode (default): ViT-B-32, B=256, bf16 autocast; needs CUDA and otherwise prints
``skipped: needs CUDA`` and exits 0 (with ``--out``, a JSON holding the reason). ``--quick``: the
tiny test config on the CPU, B=8, fp32, a couple of steps: a smoke test of the same code, not a
measurement.

Usage: ``python benchmarks/clip_step.py [--quick] [--out FILE.json] [--batch-size 256] [--image-aug unique-preset]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

if __package__:  # imported as benchmarks.clip_step (see benchmarks/__init__.py)
    from . import _common
else:  # run as python benchmarks/clip_step.py: this folder is sys.path[0]
    import _common

TARGET_RATIO = 2.3
FULL = {"model": "ViT-B-32", "batch_size": 256, "amp": "bf16", "warmup": 3, "repeats": 10}
QUICK = {"model": "tiny", "batch_size": 8, "amp": None, "warmup": 1, "repeats": 2}
_WORDS = (
    "a",
    "photo",
    "of",
    "red",
    "blue",
    "green",
    "dog",
    "cat",
    "car",
    "on",
    "the",
    "road",
    "fast",
    "small",
    "big",
    "house",
    "tree",
    "with",
    "and",
    "sky",
    "river",
    "person",
    "riding",
    "bike",
    "yellow",
    "old",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; ``--quick`` fills the unset ones with the smoke-test values."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny config on the CPU, B=8 (smoke test)")
    p.add_argument("--model", default=None, help="open_clip architecture (default ViT-B-32; 'tiny' = the test config)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--amp", default=None, help="bf16 (full default), fp16 or none")
    p.add_argument("--image-aug", default="unique-preset", choices=("unique-preset", "unique-scored", "standard"))
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    _common.apply_preset(args, QUICK, FULL)
    if isinstance(args.amp, str) and args.amp.lower() in ("none", "fp32", "off"):
        args.amp = None
    return args


def _bundle(name: str, device: torch.device):
    from factorcl.clip import load_clip, tiny_config

    if name == "tiny":
        return load_clip(config=tiny_config(), name="factorcl-tiny", device=str(device))
    return load_clip(name, device=str(device))  # random init: no pretrained tag, nothing downloaded


def _batch(bundle, batch_size: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    rng = random.Random(seed)
    captions = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 12))) for _ in range(batch_size)]
    gen = torch.Generator().manual_seed(seed)
    h, w = bundle.image_size
    return {
        "x1": bundle.tokenizer(captions).long().to(device),
        "x2": torch.rand(batch_size, 3, h, w, generator=gen).to(device),
    }


def _clip_step(bundle, batch: dict[str, torch.Tensor], amp: str | None, lr: float) -> Callable[[], None]:
    import open_clip

    from factorcl.clip import ImageTower, TextTower
    from factorcl.device import autocast

    clip = bundle.model
    device = batch["x1"].device
    image, text = ImageTower(clip, bundle.mean, bundle.std).to(device), TextTower(clip)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW([p for p in clip.parameters() if p.requires_grad], lr=lr)
    clip.train()

    def step() -> None:
        with autocast(device, amp):
            i = F.normalize(image(batch["x2"]), dim=-1)
            t = F.normalize(text(batch["x1"]), dim=-1)
            loss = loss_fn(i, t, clip.logit_scale.exp())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _factorcl_step(
    bundle, batch: dict[str, torch.Tensor], amp: str | None, lr: float, image_aug: str
) -> Callable[[], None]:
    from factorcl.clip import build_clip_factorcl
    from factorcl.device import autocast

    device = batch["x1"].device
    model = build_clip_factorcl(bundle, method="factorcl-ssl", image_aug=image_aug).to(device)
    model.train()
    main = torch.optim.AdamW(model.main_parameters(), lr=lr)
    critic = torch.optim.AdamW(model.critic_parameters(), lr=lr)

    def step() -> None:
        with autocast(device, amp):
            loss, _ = model.loss(batch)
        loss.backward()
        main.step()
        main.zero_grad(set_to_none=True)
        with autocast(device, amp):
            closs = model.critic_loss()
        closs.backward()
        critic.step()
        critic.zero_grad(set_to_none=True)

    return step


def _measure(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    bundle = _bundle(args.model, device)
    batch = _batch(bundle, args.batch_size, device, args.seed)
    if name == "clip":
        step = _clip_step(bundle, batch, args.amp, args.lr)
    else:
        step = _factorcl_step(bundle, batch, args.amp, args.lr, args.image_aug)
    if device.type == "cuda":
        for _ in range(max(1, args.warmup)):  # optimizer states allocated before the peak is reset
            step()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    timing = _common.time_fn(step, device, warmup=0 if device.type == "cuda" else args.warmup, repeats=args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    row = {
        "method": name,
        "step_ms": timing["median_ms"],
        "pairs_per_s": args.batch_size / (timing["median_ms"] / 1e3),
        "peak_gib": peak,
        "times_ms": timing["times_ms"],
    }
    del step, batch, bundle
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (0, also when skipped for lack of CUDA)."""
    args = parse_args(argv)
    config = {
        k: getattr(args, k)
        for k in ("quick", "model", "batch_size", "amp", "image_aug", "warmup", "repeats", "lr", "seed")
    }
    if not args.quick and not torch.cuda.is_available():
        reason = (
            "needs CUDA (full mode measures ViT-B-32 at batch 256 in bf16 on a GPU); "
            "run with --quick for the CPU smoke test"
        )
        print(f"skipped: {reason}")
        if args.out:
            _common.write_json(args.out, {"config": config, "environment": _common.environment(), "skipped": reason})
        return 0
    device = torch.device("cuda") if not args.quick else torch.device("cpu")
    # --quick: tiny ops, where a second thread only waits on a shared CPU.
    with _common.measuring(1 if args.quick else None):
        rows = [_measure(name, args, device) for name in ("clip", "factorcl-ssl")]
    ratio = rows[1]["step_ms"] / rows[0]["step_ms"]
    mode = "quick (tiny config, CPU: a smoke test, not a measurement)" if args.quick else f"{args.model}, {device}"
    print(
        f"clip_step: {mode}; batch {args.batch_size}, amp {args.amp or 'none'}, image aug {args.image_aug}, "
        f"median of {args.repeats} steps"
    )
    table = [[r["method"], r["step_ms"], r["pairs_per_s"], r["peak_gib"]] for r in rows]
    print(_common.format_table(["method", "step ms", "pairs/s", "peak GiB"], table, floatfmt=".2f"))
    print(f"ratio (FactorCL step time / CLIP step time): {ratio:.2f} (target <= {TARGET_RATIO})")
    passed = None
    if not args.quick:
        passed = ratio <= TARGET_RATIO
        print(_common.check_line(passed, f"FactorCL-SSL step <= {TARGET_RATIO}x the CLIP step ({ratio:.2f}x)"))
    result = {
        "config": config,
        "environment": _common.environment(device),
        "skipped": None,
        "results": rows,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "passed": passed,
    }
    if args.out:
        _common.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
