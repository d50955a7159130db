"""Cost of each method's objective: one training step of every method on the same encoders, side by side.

One step is what :class:`factorcl.train.Trainer` does per batch (:func:`_common.trainer_step`): the
main loss forward and backward and an AdamW step, then ``critic_steps`` (the
:class:`~factorcl.train.TrainConfig` default) critic steps on the cached features. Every
method starts from the same encoders and batch. Steps are interleaved: each repeat runs one step of
every method in turn, so a slow moment of a shared machine hits all of them alike; the median over
repeats is reported, with its ratio to SimCLR's step in the same run.

Multiply-adds per sample are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one whole
step (forward, backward, critic steps), halved (one multiply-add = 2 FLOPs) and divided by B. The
counter sees matrix products and convolutions only: elementwise work, solves and optimizer updates are
not in it, which is why time ratios and MAC ratios differ.

Encoders:

- ``vector``: MLPs 100 -> 512 -> 128 on Gaussian inputs (the synthetic benchmark's encoders) with
  feature augmentations (Gaussian noise and feature dropout).
- ``clip``: the tiny open_clip towers of the tests (random init, nothing downloaded) through
  :func:`factorcl.clip.build_clip_factorcl`, captions and images of random content; CLIP's own logit
  is the shared critic, so ``simclr`` there is the CLIP loss.

Methods are names of :data:`factorcl.objectives.METHODS`, optionally ``name:setting=value,...`` to
change model settings (``factorcl-ssl:conditioning=concat``). ``--set KEY=VALUE`` changes a model
setting for every method (``--set critic_hidden=256``).

``--compile`` adds, next to each method's eager step, the same step with its main loss
``torch.compile``'d, as ``TrainConfig(compile=True)`` runs it (the critic steps stay eager); the
ratios stay against the eager baseline, and each compiled row records how long its first
``COMPILE_WARMUP`` steps took, compilation included (``first_steps_s``).

    python benchmarks/objective_cost.py [--quick] [--batch-sizes 256 1024] [--encoders vector clip]
        [--repeats 10] [--compile] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import augment
import factorcl
from bounds.critics import mlp
from factorcl.train import TrainConfig

if __package__:  # imported as benchmarks.objective_cost (see benchmarks/__init__.py)
    from . import _common
else:  # run as python benchmarks/objective_cost.py: this folder is sys.path[0]
    import _common

METHODS = ("simclr", "cross+self", "cross+self+fact", "factorcl-ssl", "factorcl-ssl:conditioning=concat")
ENCODERS = ("vector", "clip")
#: FactorCL-SSL (default settings) step time / SimCLR step time, vector encoders, B = 256, CPU.
TARGET_RATIO = 3.0
INPUT_DIM, HIDDEN, FEATURES = 100, 512, 128
LR = 1e-3
#: Steps run after torch.compile before timing (``--compile``).
COMPILE_WARMUP = 3


def parse_value(text: str) -> Any:
    """A setting's value from the command line: int, float, bool, None or the string itself."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_settings(items: Sequence[str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict (values parsed by :func:`parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``name[:key=value,...]`` as (method name, settings)."""
    name, _, rest = spec.partition(":")
    return name, parse_settings([p for p in rest.split(",") if p], f"method {spec!r}")


def vector_model(method: str, settings: dict[str, Any]) -> factorcl.FactorCL:
    """A method on the vector encoders (the synthetic benchmark's sizes)."""
    aug = augment.Compose([augment.GaussianNoise(0.15), augment.FeatureDropout(0.1)])
    needs_views = factorcl.objectives.get_objective(method).needs_views
    return factorcl.FactorCL(
        mlp(INPUT_DIM, HIDDEN, FEATURES, 0),
        mlp(INPUT_DIM, HIDDEN, FEATURES, 0),
        FEATURES,
        FEATURES,
        method=method,
        augment1=aug if needs_views else None,
        augment2=aug if needs_views else None,
        **settings,
    )


def vector_batch(batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "x1": torch.randn(batch_size, INPUT_DIM, generator=gen).to(device),
        "x2": torch.randn(batch_size, INPUT_DIM, generator=gen).to(device),
    }


_WORDS = "a photo of red blue green dog cat car on the road small big house tree with and sky river".split()


def clip_builder(device: torch.device) -> tuple[Callable[[str, dict[str, Any]], factorcl.FactorCL], Callable]:
    """(model builder, batch builder) for the tiny open_clip towers; each model gets fresh towers."""
    from factorcl.clip import build_clip_factorcl, load_clip, tiny_config

    def model(method: str, settings: dict[str, Any]) -> factorcl.FactorCL:
        torch.manual_seed(0)
        bundle = load_clip(config=tiny_config(), name="factorcl-tiny", device=str(device))
        return build_clip_factorcl(bundle, method=method, **settings)

    def batch(batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        bundle = load_clip(config=tiny_config(), name="factorcl-tiny", device="cpu")
        rng = random.Random(0)
        captions = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 12))) for _ in range(batch_size)]
        h, w = bundle.image_size
        gen = torch.Generator().manual_seed(0)
        return {
            "x1": bundle.tokenizer(captions).long().to(device),
            "x2": torch.rand(batch_size, 3, h, w, generator=gen).to(device),
        }

    return model, batch


def count_macs(step: Callable[[], None], batch_size: int) -> float:
    """Multiply-adds per sample of one step (matrix products and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 2 / batch_size


def measure(
    encoders: str, batch_size: int, specs: Sequence[str], args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Build every method on the same encoders and batch, then time their steps interleaved."""
    if encoders == "vector":
        build, make_batch = vector_model, vector_batch
    else:
        build, make_batch = clip_builder(device)
    batch = make_batch(batch_size, device)
    steps: dict[str, Callable[[], None]] = {}
    rows: dict[str, dict[str, Any]] = {}
    if args.compile:
        torch._dynamo.reset()  # each batch size compiled afresh, with static shapes, as a run of one B is
    variants = [(spec, compiled) for spec in specs for compiled in ((False, True) if args.compile else (False,))]
    for spec, compiled in variants:
        method, settings = parse_method(spec)
        name = f"{spec} (compiled)" if compiled else spec
        torch.manual_seed(0)  # every vector method starts from the same encoders
        model = build(method, {**args.settings, **settings}).to(device)
        model.train()
        steps[name] = _common.trainer_step(model, batch, args.critic_steps, lr=LR)
        for _ in range(args.warmup):
            steps[name]()
        rows[name] = {
            "encoders": encoders,
            "B": batch_size,
            "method": name,
            "compiled": compiled,
            # Counted eagerly: compiling changes how the products run, not how many there are.
            "macs_per_sample": count_macs(steps[name], batch_size),
            "parameters": sum(p.numel() for p in model.parameters()),
            "times_ms": [],
        }
        if compiled:
            # What TrainConfig(compile=True) compiles: the main loss (the trainer's forward).
            model.loss = torch.compile(model.loss)
            start = time.perf_counter()
            for _ in range(COMPILE_WARMUP):  # the first calls compile, and recompile once shapes settle
                steps[name]()
            _common.synchronize(device)
            # Whole steps (critic steps included), compilation among them: what a run waits before speed.
            rows[name]["first_steps_s"] = time.perf_counter() - start
    _common.synchronize(device)
    for _ in range(args.repeats):
        for spec, step in steps.items():
            start = time.perf_counter()
            step()
            _common.synchronize(device)
            rows[spec]["times_ms"].append((time.perf_counter() - start) * 1e3)
    base = rows[specs[0]]
    base_ms = statistics.median(base["times_ms"])
    for row in rows.values():
        row["ms_per_step"] = statistics.median(row["times_ms"])
        row["x_time"] = row["ms_per_step"] / base_ms
        row["x_macs"] = row["macs_per_sample"] / base["macs_per_sample"] if base["macs_per_sample"] else float("nan")
    del steps
    gc.collect()
    return list(rows.values())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="B values (default 256 1024)")
    p.add_argument("--encoders", nargs="+", default=None, choices=ENCODERS, help="default: vector clip")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        help="methods (the first is the baseline of the ratios), optionally name:key=value,...",
    )
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a model setting")
    p.add_argument("--critic-steps", type=int, default=None, help="critic steps per step (default: TrainConfig's)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per method; the median is reported")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time every method with its main loss torch.compile'd (as TrainConfig(compile=True) does), "
        "next to its eager step",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="B=32, two repeats: a smoke test, not a measurement")
    args = p.parse_args(argv)
    quick = {"batch_sizes": [32], "encoders": ["vector", "clip"], "repeats": 2, "warmup": 1}
    full = {"batch_sizes": [256, 1024], "encoders": list(ENCODERS), "repeats": 10, "warmup": 2}
    _common.apply_preset(args, quick, full)
    if args.critic_steps is None:
        args.critic_steps = TrainConfig.critic_steps
    args.settings = parse_settings(args.sets, "--set")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the table of ms per step, ratios to the first method and MACs per sample."""
    args = parse_args(argv)
    device = _common.pick_device(args.device)
    rows: list[dict[str, Any]] = []
    config = {k: v for k, v in vars(args).items() if k != "out"}
    env = _common.environment(device)

    def save(checks_out: list[str]) -> None:
        if args.out:
            _common.write_json(args.out, {"config": config, "environment": env, "results": rows, "checks": checks_out})

    with _common.measuring(args.threads):
        for encoders in args.encoders:
            for b in args.batch_sizes:
                got = measure(encoders, b, args.methods, args, device)
                for r in got:
                    print(
                        f"{encoders:<6} B={b:<5} {r['method']:<34} {r['ms_per_step']:9.1f} ms  "
                        f"{r['x_time']:5.2f}x  {r['macs_per_sample'] / 1e6:8.2f} MMAC/sample"
                        + (f"  (first steps {r['first_steps_s']:.1f} s)" if r["compiled"] else ""),
                        flush=True,
                    )
                rows += got
                save([])  # after every batch size: a run cut short keeps what it measured
    base = args.methods[0]
    print()
    print(
        f"objective_cost: {device}, {args.threads or torch.get_num_threads()} threads, "
        f"critic_steps={args.critic_steps}, median of {args.repeats} interleaved steps; "
        f"settings {args.settings or 'default'}"
    )
    table = [
        [r["encoders"], r["B"], r["method"], r["ms_per_step"], r["x_time"], r["macs_per_sample"] / 1e6, r["x_macs"]]
        for r in rows
    ]
    headers = ["encoders", "B", "method", "ms/step", f"x {base}", "MMAC/sample", "MAC x"]
    print(_common.format_table(headers, table, floatfmt=".2f"))
    checks_out = []
    target = next(
        (r for r in rows if r["encoders"] == "vector" and r["B"] == 256 and r["method"] == "factorcl-ssl"), None
    )
    if target is not None and base == "simclr" and device.type == "cpu" and not args.settings:
        checks_out.append(
            _common.check_line(
                target["x_time"] <= TARGET_RATIO,
                f"FactorCL-SSL (default) step <= {TARGET_RATIO:g}x a SimCLR step, vector encoders, B=256, CPU "
                f"(measured {target['x_time']:.2f}x)",
            )
        )
    print("\n".join(checks_out))
    save(checks_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
