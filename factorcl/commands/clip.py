"""``factorcl clip``: continued pretraining of CLIP (open_clip) with FactorCL objectives.

Subcommands: ``demo-data`` (write the generated demo dataset), ``train`` (pretrain, export the
open_clip checkpoint + heads, linear probe on a held-out split, results JSON) and ``probe``
(linear probe of a model as it is: the zero-shot baseline, or an exported FactorCL model).
open_clip is imported only when a subcommand runs (the choices below come from modules that do
not import it).

Only the errors a user can fix (``ValueError``: bad arguments, files, data; ``OSError``: missing
or unwritable files, an ``--out`` that already holds a run; a loss that became NaN) are printed as
one ``error:`` line with exit status 2, as ``factorcl train`` does; anything else is a bug or an
environment failure and raises with its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..clip.model import CONDITIONINGS, CRITICS, SHARED_CRITICS
from ..clip.split import SPLIT_DEFAULTS
from ..clip.views import IMAGE_AUGS, TEXT_AUGS
from ..objectives import METHODS
from ..train import NonFiniteLossError

_USER_ERRORS = (ValueError, OSError, NonFiniteLossError)


def _amp(value: str) -> str | None:
    return None if value.lower() in ("none", "off", "fp32") else value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (one source)")
    g.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32) or local-dir:FOLDER")
    g.add_argument("--pretrained", help="open_clip pretrained tag (downloads the weights), e.g. laion2b_s34b_b79k")
    g.add_argument("--checkpoint", help="local open_clip weights file for --model or --config")
    g.add_argument(
        "--config",
        help="local open_clip model config JSON (no network needed; --model names it), or "
        "'tiny': factorcl's tiny random-init test architecture. For 'clip train', a "
        "YAML file (.yaml/.yml) is a run config instead: the settings of this command "
        "by their option names (data, out, lr, method, lock_text, ...)",
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help="CSV/TSV/JSONL with image, caption and optional label columns, or webdataset shards "
        "('shards/{00000..00099}.tar', or a folder of .tar files) (required)",
    )
    g.add_argument("--image-column", default="image")
    g.add_argument("--caption-column", default="caption")
    g.add_argument("--label-column", default="label")
    g.add_argument(
        "--skip-missing",
        action="store_true",
        default=None,
        help="drop rows with a missing or unreadable image file, an empty caption or a missing label "
        "(counted by reason in results.json) instead of failing (probe --export: default as "
        "recorded at training)",
    )
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help=f"held-out split for the linear probe (labels needed); default {SPLIT_DEFAULTS['test_fraction']}, "
        "or for probe --export on the training file the one recorded at training",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seed of the split (and of training); default {SPLIT_DEFAULTS['seed']}, or for probe --export "
        "on the training file the one recorded at training",
    )
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    g.add_argument("--amp", default="auto", type=_amp, help="auto (bf16 on CUDA), bf16, fp16 or none")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (training, feature extraction)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``factorcl clip`` and its subcommands."""
    clip = subparsers.add_parser(
        "clip",
        help="continued pretraining of CLIP (open_clip) with FactorCL objectives",
        description="Continued pretraining of CLIP (open_clip) with FactorCL objectives: demo data, training with "
        "export to open_clip's format, and linear probes.",
    )
    clip.set_defaults(func=lambda args: (clip.print_help(), 0)[1])
    sub = clip.add_subparsers(dest="clip_command", metavar="SUBCOMMAND")

    demo = sub.add_parser("demo-data", help="write the generated demo image-caption dataset")
    demo.add_argument("out_dir", help="folder for images/ and captions.csv, or for the shards")
    demo.add_argument("--n", type=int, default=400, help="number of image-caption pairs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--image-size", type=int, default=64)
    demo.add_argument(
        "--format",
        default="csv",
        choices=("csv", "webdataset"),
        help="csv: PNG files and captions.csv; webdataset: .tar shards with sizes.json and classes.json",
    )
    demo.add_argument("--shard-size", type=int, default=100, help="pairs per shard (--format webdataset)")
    demo.add_argument("--overwrite", action="store_true", help="replace shards already in OUT_DIR")
    demo.set_defaults(func=_demo)

    shards = sub.add_parser(
        "to-shards",
        help="convert an image-caption file into webdataset shards",
        description="Write the pairs of a CSV/TSV/JSONL/JSON image-caption file as webdataset shards "
        "OUT/00000.tar, ... (KEY.png/jpg + KEY.txt + KEY.cls), with sizes.json and classes.json.",
    )
    shards.add_argument("captions", help="the image-caption file")
    shards.add_argument("out_dir", help="folder for the shards")
    shards.add_argument("--shard-size", type=int, default=1000, help="pairs per shard")
    shards.add_argument("--overwrite", action="store_true", help="replace shards already in OUT_DIR")
    shards.add_argument("--skip-missing", action="store_true", help="drop rows with missing or unreadable images")
    shards.add_argument(
        "--no-shuffle",
        action="store_true",
        help="keep the file's row order (default: shuffle the rows, seeded, so that shards and the held-out "
        "last shards are not sorted by label)",
    )
    shards.add_argument("--seed", type=int, default=0, help="seed of the row shuffle")
    shards.add_argument("--image-column", default="image")
    shards.add_argument("--caption-column", default="caption")
    shards.add_argument("--label-column", default="label")
    shards.set_defaults(func=_to_shards)

    train = sub.add_parser(
        "train",
        help="continued pretraining, export (open_clip checkpoint + heads), probe",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_args(train)
    _add_data_args(train)
    g = train.add_argument_group("method")
    g.add_argument(
        "--method",
        default="factorcl-ssl",
        choices=sorted(METHODS),
        help="simclr = CLIP-loss fine-tuning (with --shared-critic clip)",
    )
    g.add_argument(
        "--shared-critic",
        default="clip",
        choices=SHARED_CRITICS,
        help="clip: Z_S = the towers' embeddings and CLIP's own scaled cosine as critic (shared_keep = "
        "log B - CLIP loss); learned: FactorCL heads and critic",
    )
    g.add_argument(
        "--image-aug",
        default="unique-preset",
        choices=IMAGE_AUGS,
        help="image view X2': unique-preset (flip + mild jitter), unique-scored (K standard candidates, "
        "best by the model's image-text similarity), standard (independent: FactorCL-IndAug)",
    )
    g.add_argument("--image-aug-strength", type=float, default=1.0)
    g.add_argument("--num-candidates", type=int, default=4, help="K for --image-aug unique-scored")
    g.add_argument("--text-aug", default="delete", choices=TEXT_AUGS, help="caption view X1' on token ids")
    g.add_argument("--text-aug-p", type=float, default=0.15)
    g.add_argument("--embed-dim", type=int, default=None, help="head width (default: CLIP's embedding width)")
    g.add_argument("--head-layers", type=int, default=0)
    g.add_argument("--critic", default="separable", choices=CRITICS)
    g.add_argument(
        "--conditioning",
        default=None,
        choices=CONDITIONINGS,
        help="how the conditional terms condition on C (default: FactorCL's default for the method)",
    )
    g = train.add_argument_group("towers")
    g.add_argument("--lock-image", action="store_true", help="freeze the image tower")
    g.add_argument("--lock-text", action="store_true", help="freeze the text tower")
    g.add_argument(
        "--unlocked-blocks",
        type=int,
        default=0,
        help="a locked tower keeps its last N transformer blocks (+ final norm, projection) trainable",
    )
    g.add_argument("--grad-checkpointing", action="store_true", help="recompute tower blocks in backward (less memory)")
    g = train.add_argument_group("training")
    g.add_argument("--out", help="output folder (train/, export/, results.json) (required)")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any setting by its option name, or any FactorCL setting (e.g. --set lr=1e-4 --set "
        "num_negatives=63); applied after --config and the options (repeatable)",
    )
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument(
        "--lr",
        type=float,
        default=1e-5,
        help="learning rate of the heads and critics (and of the towers unless --tower-lr is given)",
    )
    g.add_argument(
        "--tower-lr",
        type=float,
        default=None,
        help="learning rate of the image and text towers (e.g. 1e-5 with --lr 1e-3 for new heads)",
    )
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--critic-steps", type=int, default=3)
    g.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--grad-clip", type=float, default=None)
    g.add_argument("--resume", default=None, help="'auto' (OUT/train/checkpoint.pt if it exists) or a checkpoint path")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in OUT/train (without it, train refuses to touch one)",
    )
    g.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept a changed schedule (lr, epochs, ...); the change is recorded in the checkpoint",
    )
    g.add_argument(
        "--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: every epoch)"
    )
    g.add_argument("--stop-after", type=int, default=None, help="stop (and checkpoint) after this many steps")
    g.add_argument("--max-steps", type=int, default=None, help="the run's length in steps (the schedule spans them)")
    g.add_argument("--compile", action="store_true", help="torch.compile the loss (opt-in; pays off on GPUs)")
    g.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    g = train.add_argument_group("shards (webdataset --data)")
    g.add_argument(
        "--train-num-samples",
        type=int,
        default=None,
        help="samples per epoch (default: the total of sizes.json beside the shards)",
    )
    g.add_argument(
        "--val-data",
        default=None,
        help="held-out shards (default: the last --test-fraction of the --data shards)",
    )
    g.add_argument("--probe-samples", type=int, default=10000, help="training pairs the linear probe fits on, at most")
    g = train.add_argument_group("evaluation")
    g.add_argument(
        "--no-eval",
        action="store_true",
        help="skip zero-shot and retrieval on the held-out pairs (pretrained and trained towers)",
    )
    _add_templates_arg(g)
    g.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="every N steps: k-NN probe, zero-shot and retrieval on a held-out subset (train/eval.csv)",
    )
    g.add_argument("--eval-samples", type=int, default=1000, help="held-out pairs of each --eval-every evaluation")
    g.add_argument(
        "--eval-pairs",
        type=int,
        default=10000,
        help="held-out pairs of the zero-shot and retrieval evaluation before and after training, at most",
    )
    g.add_argument("--wandb-project", default=None, help="also log to this Weights & Biases project (rank 0)")
    g.add_argument("--wandb-name", default=None, help="the W&B run's name")
    train.set_defaults(func=_train, option_defaults=_track_given_options(train))

    evaluate = sub.add_parser(
        "eval",
        help="zero-shot classification and retrieval of a model's towers: pretrained, or an export",
        description="Zero-shot top-1/top-5 from class-name prompts and image-text retrieval R@1/5/10. With "
        "--export on the data it trained on: on the held-out pairs recorded at training; otherwise on every "
        "pair of --data.",
    )
    _add_model_args(evaluate)
    evaluate.add_argument("--export", help="an export folder of 'factorcl clip train'")
    _add_data_args(evaluate)
    _add_templates_arg(evaluate)
    evaluate.add_argument("--out", help="write the results JSON here")
    evaluate.set_defaults(func=_eval)

    probe = sub.add_parser(
        "probe", help="linear probe on image+caption features: the frozen pretrained towers, or an export"
    )
    _add_model_args(probe)
    probe.add_argument(
        "--export",
        help="an export folder of 'factorcl clip train' (probes its FactorCL parts; on the "
        "training file, on the held-out rows recorded at training)",
    )
    _add_data_args(probe)
    probe.add_argument("--out", help="write the results JSON here")
    probe.set_defaults(func=_probe)


def _fail(message: str) -> int:
    print(f"factorcl clip: error: {message}", file=sys.stderr)
    return 2


def _add_templates_arg(g: Any) -> None:
    g.add_argument(
        "--templates",
        default=None,
        help="zero-shot prompts: 'openai' (open_clip's 80 ImageNet templates, the default), 'simple', or a file "
        "with one template per line, '{}' where the class name goes",
    )


def _demo(args: argparse.Namespace) -> int:
    from ..clip.demo_data import write_demo_dataset

    try:
        if args.format == "webdataset":
            from ..clip.to_shards import write_demo_shards

            summary = write_demo_shards(
                args.out_dir,
                n=args.n,
                seed=args.seed,
                image_size=args.image_size,
                shard_size=args.shard_size,
                overwrite=args.overwrite,
            )
            print(f"wrote {args.n} image-caption pairs in {len(summary['shards'])} shards: {summary['pattern']}")
            return 0
        path = write_demo_dataset(args.out_dir, n=args.n, seed=args.seed, image_size=args.image_size)
    except _USER_ERRORS as exc:
        return _fail(str(exc))
    print(f"wrote {args.n} image-caption pairs: {path}")
    return 0


def _to_shards(args: argparse.Namespace) -> int:
    from ..clip.to_shards import captions_to_shards

    try:
        summary = captions_to_shards(
            args.captions,
            args.out_dir,
            shard_size=args.shard_size,
            overwrite=args.overwrite,
            skip_missing=args.skip_missing,
            image_column=args.image_column,
            caption_column=args.caption_column,
            label_column=args.label_column or None,
            shuffle=not args.no_shuffle,
            seed=args.seed,
        )
    except _USER_ERRORS as exc:
        return _fail(str(exc))
    dropped = sum(summary["skipped"].values())
    note = f" ({dropped} rows skipped)" if dropped else ""
    print(f"wrote {summary['samples']} pairs in {len(summary['shards'])} shards{note}: {summary['pattern']}")
    return 0


def _check_source(args: argparse.Namespace) -> str | None:
    if not args.model and not args.config:
        return "pass --model NAME (with --pretrained TAG or --checkpoint FILE) or --config FILE.json"
    if args.config == "tiny" and not Path(args.config).exists():
        from ..clip.tiny import tiny_config

        args.config = tiny_config()
        args.model = args.model or "factorcl-tiny"
    return None


def _export_or_model(args: argparse.Namespace) -> str | None:
    """What is wrong with the model source of ``probe``/``eval`` (an export, or one model), or None."""
    if args.export and (args.model or args.config):
        return "pass either --export FOLDER or a model (--model/--config), not both"
    if not args.export:
        problem = _check_source(args)
        if problem:
            return problem + ", or --export FOLDER"
    return None


def _print_probe(probe: dict[str, Any] | None) -> None:
    if not probe:
        return
    width = max(len(k) for k in probe)
    print("linear probe (held-out split):")
    for name, r in probe.items():
        print(f"  {name:<{width}}  accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}")


def _track_given_options(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Make options absent from the command line absent from the parsed namespace; returns their defaults.

    So that a run config can fill what the command line did not give, even an option given with
    its default value. The help text keeps showing each default.
    """
    defaults: dict[str, Any] = {}
    for action in parser._actions:
        if action.dest in ("help", argparse.SUPPRESS) or action.default is argparse.SUPPRESS:
            continue
        defaults[action.dest] = action.default
        shown = action.default is not None and action.default is not False and action.default != []
        if shown and "%(default)" not in (action.help or ""):
            action.help = f"{action.help} (default: {action.default})" if action.help else f"default: {action.default}"
        action.default = argparse.SUPPRESS
    parser.formatter_class = argparse.HelpFormatter
    return defaults


#: ``clip train`` options whose ``pretrain_clip`` keyword has another name, and the negated ones.
_RENAMED = {"out": "out_dir", "workers": "num_workers"}
_NEGATED = {"no_probe": "probe", "no_progress": "progress", "no_eval": "evaluate"}
#: Parsed values that are not settings.
_NOT_SETTINGS = ("func", "option_defaults", "command", "clip_command", "overrides")


def _train_settings(args: argparse.Namespace) -> argparse.Namespace:
    """The options, with a YAML run config (``--config run.yaml``) under them and ``--set`` over them.

    Precedence: defaults < the run config < options given on the command line < ``--set``. Keys
    are the options' names (``lock_text``, ``out``) or any FactorCL setting (``num_negatives``).
    """
    import yaml

    from ..config import read_config_file
    from ..model_config import FactorCLConfig

    defaults: dict[str, Any] = args.option_defaults
    given = {k for k in vars(args) if k in defaults}
    values = {**defaults, **{k: getattr(args, k) for k in given}}
    known = [k for k in defaults if k not in _NOT_SETTINGS]
    allowed = known + [k for k in FactorCLConfig.field_names() if k not in known]
    layers: list[tuple[str, dict[str, Any]]] = []
    run_config = values.get("config")
    if run_config and Path(run_config).suffix.lower() in (".yaml", ".yml"):
        data = read_config_file(run_config)
        given.discard("config")
        values["config"] = None  # the run config may name an open_clip model config itself
        layers.append((f"run config {run_config}", {k.replace("-", "_"): v for k, v in data.items()}))
    parsed = {}
    for text in values.get("overrides") or []:
        if "=" not in text:
            raise ValueError(f"--set {text!r} must look like KEY=VALUE (e.g. --set lr=1e-4)")
        key, raw = text.split("=", 1)
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw.strip() else None
    extra: dict[str, Any] = {}
    for where, layer in layers + [("--set", parsed)]:
        for key, value in layer.items():
            if key not in allowed:
                from difflib import get_close_matches

                close = get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown setting {key!r} in {where}{hint} (settings: the options of 'factorcl clip "
                    "train' by their names, and FactorCL's: " + ", ".join(FactorCLConfig.field_names()) + ")"
                )
            if where != "--set" and key in given:
                continue  # an option given on the command line wins over the run config
            (values if key in known else extra)[key] = value
    for key in ("data", "out"):
        if not values.get(key):
            raise ValueError(f"--{key} is required (or '{key}:' in the run config)")
    values.pop("overrides", None)
    return argparse.Namespace(**{**vars(args), **values, "factorcl_settings": extra})


def _train(args: argparse.Namespace) -> int:
    try:
        args = _train_settings(args)
    except _USER_ERRORS as exc:
        return _fail(str(exc))
    problem = _check_source(args)
    if problem:
        return _fail(problem)
    from ..distributed import distributed_session, is_main_process

    split = {k: SPLIT_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in SPLIT_DEFAULTS}
    with distributed_session():  # under torchrun: every rank trains, rank 0 exports and probes
        try:
            results = _pretrain(args, split)
        except _USER_ERRORS as exc:
            return _fail(str(exc))
    if not is_main_process():
        return 0
    # The training summary and the evaluation table were printed before the probe started.
    _print_probe(results.get("probe"))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _pretrain(args: argparse.Namespace, split: dict[str, Any]) -> dict[str, Any]:
    """``pretrain_clip`` with every setting, taken by name from the options (no hand-copied list)."""
    from ..clip.pretrain import pretrain_clip

    kwargs: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key in _NOT_SETTINGS or key == "factorcl_settings":
            continue
        if key in _NEGATED:
            kwargs[_NEGATED[key]] = not value
        else:  # every option is a pretrain_clip keyword or a (Clip)FactorCLConfig field
            kwargs[_RENAMED.get(key, key)] = value
    kwargs.update(split, label_column=args.label_column or None, log=lambda line: print(line, flush=True))
    kwargs.update(args.factorcl_settings)
    return pretrain_clip(kwargs.pop("data"), kwargs.pop("out_dir"), **kwargs)


def _probe(args: argparse.Namespace) -> int:
    problem = _export_or_model(args)
    if problem:
        return _fail(problem)
    from ..clip.evaluate import probe_clip
    from ..clip.export import export_split, load_clip_factorcl
    from ..clip.loading import load_clip
    from ..jsonio import write_json

    try:
        if args.export:
            model, bundle = load_clip_factorcl(args.export)
            recorded = export_split(args.export)
        else:
            model, recorded = None, None
            bundle = load_clip(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, config=args.config)
        results = probe_clip(
            bundle,
            args.data,
            test_fraction=args.test_fraction,
            seed=args.seed,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            amp=args.amp,
            skip_missing=args.skip_missing,
            model=model,
            recorded_split=recorded,
            image_column=args.image_column,
            caption_column=args.caption_column,
            label_column=args.label_column,
            progress=not args.no_progress,
        )
    except _USER_ERRORS as exc:
        return _fail(str(exc))
    split = results["split"]
    if split["training_data"]:
        print(f"held-out split recorded at training: seed {split['seed']}, test fraction {split['test_fraction']}")
    _print_probe(results["probe"])
    if args.out:
        print(f"results: {write_json(args.out, results)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    problem = _export_or_model(args)
    if problem:
        return _fail(problem)
    if not args.data:
        return _fail("--data is required")
    from ..clip.evaluate_command import evaluate_clip
    from ..jsonio import write_json

    try:
        results = evaluate_clip(
            args.data,
            export=args.export,
            model=args.model,
            pretrained=args.pretrained,
            checkpoint=args.checkpoint,
            config=args.config,
            templates=args.templates,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            amp=args.amp,
            skip_missing=bool(args.skip_missing),
            image_column=args.image_column,
            caption_column=args.caption_column,
            label_column=args.label_column or None,
            progress=not args.no_progress,
        )
    except _USER_ERRORS as exc:
        return _fail(str(exc))
    from ..clip.held_out import eval_table

    print(f"evaluated on {results['evaluated_on']}")
    held = results["evaluated_on"].startswith("the ")  # the held-out pairs recorded at training
    for line in eval_table({results["model"]["name"]: results["eval"]}, "held-out pairs" if held else "pairs"):
        print(line)
    if args.out:
        print(f"results: {write_json(args.out, results)}")
    return 0
