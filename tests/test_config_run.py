"""Run configs (validation names the key) and the train-then-probe pipeline, end to end through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import augment
from factorcl import cli
from factorcl.config import ConfigError, build_augment, load_config, save_config
from factorcl.data.fake import write_fake_affect, write_fake_mimic, write_fake_pairs
from factorcl.run import build_data, build_model, probe_run, run_config

TINY_SEQ = {"type": "transformer", "d_model": 8, "heads": 2, "layers": 1, "ff_dim": 16, "out_dim": 8}
TINY_TRAIN = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "progress": False, "tensorboard": False, "seed": 0}
TINY_MODEL = {"embed_dim": 8, "critic_hidden": 16, "critic_embed": 8}


# ----------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"data": {"kind": "mosii"}},
            r"config key 'data.kind' must be one of "
            r"\['multibench', 'mimic', 'arrays', 'shards', 'synthetic'\], got 'mosii'",
        ),
        ({"data": {"kind": "mimic"}}, r"config key 'data.path' is required for data.kind 'mimic'"),
        (
            {"data": {"kind": "multibench", "path": "x.pkl", "dataset": "mosx"}},
            r"config key 'data.dataset': dataset must be one of",
        ),
        (
            {"data": {"kind": "multibench", "path": "x.pkl", "modalities": ["text"]}},
            r"config key 'data.modalities' must be two",
        ),
        ({"data": {"kind": "mimic", "path": "im.pk", "task": "icd9-25"}}, r"config key 'data.task': task must be"),
        ({"data": {"kind": "arrays", "path": "a.npz", "splits": [0.5, 0.6, 0.1]}}, r"config key 'data.splits'"),
        (
            {"data": {"kind": "synthetic", "synthetic": {"num_sample": 5}}},
            r"unknown config key 'data.synthetic.num_sample'; did you mean 'num_samples'\?",
        ),
        ({"data": {"knd": "mimic"}}, r"unknown config key 'data.knd'; did you mean 'kind'\?"),
        ({"model": {"method": "factorcl"}}, r"config key 'model.method': method must be one of"),
        ({"model": {"critic": "bilinear"}}, r"config key 'model.critic' must be one of \['separable', 'concat'\]"),
        ({"model": {"embed_dim": "big"}}, r"config key 'model.embed_dim' must be an integer or null, got 'big'"),
        (
            {"model": {"augment1": "none"}},
            r"config key 'model.augment1' is 'none', but method 'factorcl-ssl' needs augmented views",
        ),
        ({"model": {"augment1": "noize"}}, r"config key 'model.augment1': .*got 'noize'; did you mean 'noise'\?"),
        (
            {"model": {"augment1": {"name": "noise", "sigma": 1}}},
            r"unknown key model.augment1.sigma for augmentation 'noise'",
        ),
        # Parameter values are checked at load time, named by their config key.
        (
            {"model": {"augment1": {"name": "noise", "std": -1}}},
            r"config key 'model.augment1': model.augment1: std must be >= 0.0, got -1",
        ),
        (
            {"model": {"augment1": [{"name": "time_mask", "p": 1.5}]}},
            r"config key 'model.augment1': model.augment1\[0\]: p must be in \[0, 1\], got 1.5",
        ),
        ({"model": {"augment2": {"name": "auto", "strength": 9}}}, r"model.augment2: strength must be <= 2.0, got 9"),
        (
            {"model": {"augment1": {"choice": ["noise", "mixup"], "weights": [1, -1]}}},
            r"model.augment1.weights: weights\[1\] must be >= 0",
        ),
        ({"model": {"options": {"temprature": 1}}}, r"unknown config key 'model.options.temprature'"),
        ({"encoders": {"x1": "lstm"}}, r"config key 'encoders.x1': encoders.x1.type must be one of"),
        ({"encoders": {"x2": {"type": "gru", "hiden": 3}}}, r"unknown key encoders.x2.hiden for a 'gru' encoder"),
        ({"train": {"epoch": 3}}, r"unknown config key 'train.epoch'; did you mean 'epochs'\?"),
        ({"train": {"epochs": 0}}, r"config key 'train.epochs': epochs=0 is not valid"),
        ({"train": {"lr": "fast"}}, r"config key 'train.lr' must be a number, got 'fast'"),
        ({"train": {"out_dir": "x"}}, r"set the top-level 'out_dir'"),
        ({"probe": {"select": "test"}}, r"config key 'probe.select' must be one of \['valid', 'val_fraction'\]"),
        ({"probe": {"l2_grid": []}}, r"config key 'probe.l2_grid' must be a non-empty list"),
        ({"trian": {}}, r"unknown config key 'trian'; did you mean 'train'\?"),
    ],
)
def test_validation_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(data)


def test_load_yaml_overrides_and_roundtrip(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {kind: synthetic}\ntrain: {lr: 1e-3, epochs: 2}\nprobe: {l2_grid: [1e-2, 0]}\n")
    cfg = load_config(path, ["train.epochs=5", "model.method=SimCLR", "out_dir=somewhere"])
    assert cfg.train == {"lr": 1e-3, "epochs": 5}  # PyYAML reads 1e-3 as a string: accepted as a number
    assert cfg.model.method == "simclr" and cfg.out_dir == "somewhere" and cfg.probe.l2_grid == [1e-2, 0.0]
    assert cfg.trainer_config().epochs == 5 and cfg.trainer_config().out_dir == "somewhere"
    assert cfg.train_value("batch_size") == 128 and cfg.train_value("critic_steps") == 3  # TrainConfig default
    saved = save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(saved).to_dict() == cfg.to_dict()
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps(cfg.to_dict()))
    assert load_config(json_path).to_dict() == cfg.to_dict()
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, ["train.epochs"])


def test_examples_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("mosi.yaml", "mimic.yaml", "pairs.yaml"):
        assert (root / name).is_file(), f"examples/{name} is missing"
        load_config(root / name)


def test_augment_specs():
    seq = build_augment("auto", (6, 3))
    assert isinstance(seq, augment.RandomChoice) and len(seq.augmentations) == 4
    vec = build_augment({"name": "features", "std": 0.2}, (5,))
    assert isinstance(vec, augment.RandomChoice) and vec.augmentations[0].std == 0.2
    assert build_augment("none", (5,)) is None
    choice = build_augment([{"name": "noise", "std": 0.3}, "time_shuffle"], (6, 3))
    assert isinstance(choice, augment.RandomChoice)
    comp = build_augment({"compose": ["noise", {"name": "time_mask", "p": 0.5}]}, (6, 3))
    assert isinstance(comp, augment.Compose)
    x = torch.randn(4, 6, 3)
    mask = torch.arange(6)[None, :] >= torch.tensor([0, 2, 4, 5])[:, None]
    out = comp(x, mask=mask)
    assert torch.equal(out[~mask], x[~mask])  # padding untouched
    with pytest.raises(ValueError, match="needs sequences"):
        build_augment("sequence", (5,))


@pytest.mark.parametrize(
    "data, message",
    [
        # pydantic's errors, in the words of the config layer (the key, what it must be, what it got)
        ({"train": {"batch_size": 0}}, r"^config key 'train.batch_size' must be >= 1, got 0$"),
        ({"train": {"num_workers": -1}}, r"^config key 'train.num_workers' must be >= 0, got -1$"),
        ({"train": {"epochs": "3"}}, r"^config key 'train.epochs' must be an integer, got '3'$"),  # strict: no "3" -> 3
        ({"train": {"drop_last": 1}}, r"^config key 'train.drop_last' must be true/false, got 1$"),
        (
            {"train": {"resume": "auto", "overwrite": True}},
            r"^config key 'train.resume': resume='auto' and overwrite=True",
        ),
        ({"train": [1]}, r"^config key 'train' must be a mapping, got list$"),
        ({"probe": {"val_fraction": 1}}, r"^config key 'probe.val_fraction' must be in \[0, 1\), got 1$"),
        (
            {"probe": {"l2_grid": [1, -1]}},
            r"^config key 'probe.l2_grid' must be a non-empty list of L2 strengths >= 0, ",
        ),
        ({"probe": {"select": "vaild"}}, r"got 'vaild'; did you mean 'valid'\?$"),
        ({"model": {"temperature": True}}, r"^config key 'model.temperature' must be a number, got True$"),
        (
            {"model": {"temprature": 1}},
            r"^unknown config key 'model.temprature'; did you mean 'temperature'\? \(allowed: ",
        ),
        ({"model": {"num_negatives": 0}}, r"^config key 'model.num_negatives' must be an integer >= 1, got 0$"),
        (
            {"model": {"options": {"embed_dim": 32}, "embed_dim": 16}},
            r"'model.options.embed_dim' and 'model.embed_dim'",
        ),
        (
            {"data": {"kind": "arrays", "path": 5}},
            r"^config key 'data.path' must be a string or a mapping or null, got 5$",
        ),
        ({"data": {"kind": "mimic", "path": "im.pk", "task": True}}, r"must be a string or an integer, got True$"),
        ({"data": []}, r"^config key 'data' must be a mapping, got list$"),
        ({"out_dir": 5}, r"^config key 'out_dir' must be a string \(a folder path\), got 5$"),
        ({"trian": {}, "data": {"kind": "mosii"}}, r"^unknown config key 'trian'; did you mean 'train'\? \(sections: "),
    ],
)
def test_schema_errors_are_worded_like_the_config_layer(data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(data)


def test_yaml_numbers_and_python_values_are_accepted(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {temperature: 5e-2}\ntrain: {grad_clip: 1e+1, lr: 3}\nprobe: {val_fraction: 1e-1}\n")
    cfg = load_config(path)  # PyYAML reads 5e-2 as a string: float keys take it as a number
    assert cfg.model.temperature == 0.05 and cfg.probe.val_fraction == 0.1
    assert cfg.train == {"grad_clip": 10.0, "lr": 3.0} and isinstance(cfg.train["lr"], float)
    cfg = load_config(
        {
            "data": {"kind": "arrays", "path": tmp_path / "a.npz", "splits": (0.5, 0.25, 0.25)},
            "out_dir": tmp_path / "run",
        }
    )  # paths and tuples from Python are what YAML would hold
    assert cfg.data.path == str(tmp_path / "a.npz") and cfg.data.splits == [0.5, 0.25, 0.25]
    assert cfg.out_dir == str(tmp_path / "run") and cfg.source is None


def test_sections_are_derived_from_the_classes_that_own_the_settings():
    import dataclasses

    from factorcl import FactorCLConfig, TrainConfig
    from factorcl.config import LOADER_KEYS, RUN_MODEL_DEFAULTS, ModelConfig, TrainSection

    model = {f.name: RUN_MODEL_DEFAULTS.get(f.name, f.default) for f in dataclasses.fields(FactorCLConfig)}
    del model["num_classes"]
    assert {k: v.get_default(call_default_factory=True) for k, v in ModelConfig.model_fields.items()} == {
        **model,
        "augment1": "auto",
        "augment2": None,
        "options": {},
    }
    train = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != "out_dir"}
    assert {k: v.get_default(call_default_factory=True) for k, v in TrainSection.model_fields.items()} == {
        **train,
        **LOADER_KEYS,
    }
    cfg = load_config({"model": {"embed_dim": 16, "critic": "concat"}})
    assert cfg.model.factorcl_config(num_classes=None) == FactorCLConfig(embed_dim=16, critic="concat")


def test_readme_config_reference_is_the_schema():
    from pathlib import Path

    from factorcl.config import config_reference

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert config_reference() in readme, (
        "README.md's config reference differs from the schema: paste the output of "
        "python -c 'from factorcl.config import config_reference; print(config_reference())'"
    )


def test_augment_spec_is_parsed_once_into_a_tree(monkeypatch):
    import augment.spec as spec
    from augment.spec import ChoiceSpec, ComposeSpec, NamedSpec

    raw = [
        {"name": "noise", "std": 0.3},
        {"choice": ["none", "time_shuffle"], "weights": [1, 3]},
        {"compose": ["NOISE", {"name": "time_mask", "p": 0.5}]},
    ]
    assert spec.parse_augment(raw, "x") == ChoiceSpec(
        (
            NamedSpec("noise", {"std": 0.3}, "[0]"),
            ChoiceSpec(
                (NamedSpec("identity", {}, "[1].choice[0]"), NamedSpec("time_shuffle", {}, "[1].choice[1]")),
                (1, 3),
                "[1]",
            ),
            ComposeSpec(
                (NamedSpec("noise", {}, "[2].compose[0]"), NamedSpec("time_mask", {"p": 0.5}, "[2].compose[1]")), "[2]"
            ),
        )
    )
    assert spec.parse_augment("off") is None and spec.parse_augment(None) is None
    cfg = load_config({"model": {"augment1": raw}})

    def no_parsing(*args, **kwargs):
        raise AssertionError("the spec was parsed again")

    monkeypatch.setattr(spec, "parse_augment", no_parsing)  # building uses the tree parsed at load time
    aug1, aug2 = cfg.model.build_augments((6, 3), (6, 4))  # augment2 null: augment1's spec, for X2
    assert isinstance(aug1, augment.RandomChoice) and isinstance(aug2, augment.RandomChoice)
    assert aug1.augmentations[0].std == 0.3 and aug2.augmentations[1].weights == [0.25, 0.75]
    with pytest.raises(ValueError, match=r"^model.augment2\[1\].choice\[1\]: 'time_shuffle' needs sequences"):
        cfg.model.build_augments((6, 3), (5,))  # shape problems are found when building, named by the key built


# ------------------------------------------------------------------------------------- pipeline
def _mosi_config(tmp_path, method="factorcl-ssl", **extra):
    data = write_fake_affect(tmp_path / "mosi_raw.pkl", "mosi", sizes=(32, 10, 10), seq_len=6)
    cfg = {
        "data": {"kind": "multibench", "path": str(data), "modalities": ["vision", "text"]},
        "encoders": {"x1": TINY_SEQ, "x2": {"type": "gru", "hidden": 8, "out_dim": 8}},
        "model": {"method": method, **TINY_MODEL, "augment1": "sequence"},
        "train": dict(TINY_TRAIN),
        "probe": {"l2_grid": [1e-2, 1e-4], "max_iter": 50},
        "out_dir": str(tmp_path / "run"),
    }
    cfg.update(extra)
    return cfg


def test_cli_train_then_probe_reproduces_accuracy(tmp_path, capsys):
    cfg = _mosi_config(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", "--config", str(path), "--quiet"]) == 0
    run = tmp_path / "run"
    for name in ("results.json", "checkpoint.pt", "config.yaml", "metrics.csv"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == "factorcl-ssl" and results["dataset"] == "mosi"
    assert set(results["probe"]) == {"all", "S", "U1", "U2"}
    assert 0.0 <= results["accuracy"] <= 1.0 and results["accuracy"] == results["probe"]["all"]["accuracy"]
    assert results["probe"]["all"]["selected_on"] == "valid"
    assert results["data"]["sizes"] == {"train": 31, "valid": 9, "test": 9}  # all-zero-text rows dropped
    assert results["train"]["steps"] == 1
    out = capsys.readouterr().out
    assert "accuracy" in out and "U1" in out

    assert cli.main(["probe", "--run", str(run)]) == 0
    again = json.loads((run / "probe_results.json").read_text())
    for part, r in results["probe"].items():
        assert again["probe"][part]["accuracy"] == pytest.approx(r["accuracy"], abs=1e-6), part
        assert again["probe"][part]["l2"] == r["l2"]
    other = tmp_path / "elsewhere.json"
    assert (
        cli.main(
            ["probe", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(other), "--set", "probe.ablation=false"]
        )
        == 0
    )
    assert set(json.loads(other.read_text())["probe"]) == {"all"}


def test_cli_errors_are_reported(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {kind: mosii}\n")
    assert cli.main(["train", "--config", str(path)]) == 2
    assert "config key 'data.kind' must be one of" in capsys.readouterr().err
    assert cli.main(["probe", "--run", str(tmp_path / "nothing")]) == 2
    assert "no run folder or checkpoint" in capsys.readouterr().err
    cfg = _mosi_config(tmp_path)
    cfg["data"]["path"] = str(tmp_path / "missing.pkl")
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", "--config", str(path)]) == 2
    assert "missing.pkl" in capsys.readouterr().err


def test_supervised_on_mimic_and_relative_paths(tmp_path, monkeypatch):
    write_fake_mimic(tmp_path / "data" / "im.pk", n=60)
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    # A path relative to the config file's folder (not to the current folder) is found too.
    (cfg_dir / "mimic.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"kind": "mimic", "path": "../data/im.pk", "task": "icd9-2"},
                "encoders": {"x1": {"type": "mlp", "hidden": 16, "out_dim": 8}, "x2": {"type": "gru", "hidden": 8}},
                "model": {"method": "factorcl-sup", "critic": "concat", **TINY_MODEL},
                "train": TINY_TRAIN,
                "probe": {"l2_grid": [1e-2], "ablation": False},
                "out_dir": str(tmp_path / "mimic_run"),
            }
        )
    )
    monkeypatch.chdir(tmp_path / "data")
    results = run_config(cfg_dir / "mimic.yaml")
    assert results["method"] == "factorcl-sup" and set(results["probe"]) == {"all"}
    saved = yaml.safe_load((tmp_path / "mimic_run" / "config.yaml").read_text())
    assert saved["data"]["path"] == str((tmp_path / "data" / "im.pk").resolve())
    again = probe_run(tmp_path / "mimic_run")
    assert again["accuracy"] == pytest.approx(results["accuracy"], abs=1e-6)


def test_train_probes_on_the_training_device(tmp_path, monkeypatch):
    """``factorcl train`` hands its train.device to the probe driver (it used to probe on the CPU always)."""
    import factorcl.probe
    from factorcl.device import select_device

    seen = []
    driver = factorcl.probe.probe_parts
    monkeypatch.setattr(factorcl.probe, "probe_parts", lambda *a, **kw: seen.append(kw["device"]) or driver(*a, **kw))
    cfg = _mosi_config(tmp_path)
    cfg["train"]["device"] = "auto"
    results = run_config(cfg)
    assert seen == [select_device("auto")] and set(results["probe"]) == {"all", "S", "U1", "U2"}


def test_unlabelled_arrays_train_without_probe_and_sup_needs_labels(tmp_path):
    path = write_fake_pairs(tmp_path / "pairs.npz", n=40, labels=False)
    cfg = {
        "data": {"kind": "arrays", "path": str(path)},
        "encoders": {"x1": {"type": "mlp", "hidden": 16, "out_dim": 8}, "x2": {"type": "gru", "hidden": 8}},
        "model": {"method": "simclr", **TINY_MODEL},
        "train": TINY_TRAIN,
        "out_dir": str(tmp_path / "r"),
    }
    results = run_config(cfg)
    assert results["probe"] is None and "no labels" in results["note"]
    cfg["model"]["method"] = "supcon"
    cfg["out_dir"] = str(tmp_path / "r-supcon")
    with pytest.raises(ValueError, match="supervised but the data has no labels"):
        run_config(cfg)


def test_build_model_from_config_uses_data_shapes(tmp_path):
    cfg = load_config(_mosi_config(tmp_path, method="ourcl-sup"))
    data = build_data(cfg)
    model = build_model(cfg, data)
    assert model.num_classes == 2 and model.dims == (8, 8)
    batch = next(iter(data.train.loader(8)))
    loss, metrics = model.loss(batch)
    assert torch.isfinite(loss) and "unique_keep1" in metrics


def test_write_json_writes_strict_json_atomically(tmp_path, monkeypatch):
    import math
    from pathlib import Path

    from factorcl.jsonio import to_jsonable, write_json

    data = {
        "loss": float("nan"),
        "acc": [0.5, math.inf],
        "t": torch.tensor([1.0, 2.0]),
        3: (Path("a/b"), None),
        "n": torch.tensor(7),
        "obj": object,
    }
    path = write_json(tmp_path / "sub" / "r.json", data)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert loaded == {"loss": None, "acc": [0.5, None], "t": [1.0, 2.0], "3": ["a/b", None], "n": 7, "obj": str(object)}
    assert to_jsonable({"x": (1, float("-inf"))}) == {"x": [1, None]}
    # Replaced in one step, no temporary file left behind; a failed write keeps the old file.
    write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2} and [p.name for p in path.parent.iterdir()] == ["r.json"]
    import factorcl.jsonio

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(factorcl.jsonio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"v": 3})
    assert json.loads(path.read_text()) == {"v": 2} and [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_a_config_saved_before_aux_critic_hidden_rebuilds_the_critics_it_was_saved_with():
    """A saved config from before issue 15 has no aux_critic_hidden: its removal/conditional critics
    were critic_hidden wide, which is what the default (None) rebuilds, so its checkpoint loads."""
    from factorcl.config import config_from_dict
    from factorcl.model_config import FactorCLConfig

    saved = FactorCLConfig(critic_hidden=48).to_dict()
    del saved["aux_critic_hidden"]
    assert FactorCLConfig.from_dict(saved).effective_aux_critic_hidden == 48
    section = {k: v for k, v in saved.items() if k != "num_classes"}
    run = config_from_dict({"data": {"kind": "synthetic"}, "model": section})
    assert run.model.factorcl_config().effective_aux_critic_hidden == 48
    run = config_from_dict({"data": {"kind": "synthetic"}, "model": {**section, "aux_critic_hidden": 16}})
    assert run.model.factorcl_config().effective_aux_critic_hidden == 16
