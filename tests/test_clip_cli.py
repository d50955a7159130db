"""``factorcl clip``: demo data, train (export + probe + results JSON), probe, and clear errors."""

from __future__ import annotations

import json

import pytest

from factorcl.cli import main
from factorcl.clip import tiny_config


def test_demo_data_train_and_probe_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "demo"
    assert main(["clip", "demo-data", str(data), "--n", "48", "--seed", "1"]) == 0
    assert (data / "captions.csv").is_file() and len(list((data / "images").iterdir())) == 48
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config()))
    out = tmp_path / "run"
    code = main(
        [
            "clip",
            "train",
            "--data",
            str(data / "captions.csv"),
            "--config",
            str(config),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--lr",
            "1e-3",
            "--lock-image",
            "--unlocked-blocks",
            "1",
            "--image-aug",
            "unique-scored",
            "--num-candidates",
            "2",
            "--text-aug",
            "mask",
            "--accumulate",
            "2",
            "--grad-checkpointing",
            "--amp",
            "none",
            "--device",
            "cpu",
            "--no-progress",
            "--seed",
            "1",
            "--test-fraction",
            "0.25",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "open_clip checkpoint:" in printed and "factorcl:U2" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["lock_image"] is True and results["config"]["image_aug"] == "unique-scored"
    assert results["train"]["steps"] == 2  # 36 training rows -> 4 batches of 8 -> 2 steps of 2 micro-batches
    assert results["split"]["seed"] == 1 and results["split"]["test_fraction"] == 0.25
    assert results["data"]["test"] == results["split"]["test_rows"] == 12
    assert (out / "train" / "metrics.csv").is_file() and (out / "train" / "checkpoint.pt").is_file()
    # probe --export without split flags: the split recorded at training (seed 1, 0.25), not the defaults.
    probe_json = tmp_path / "probe.json"
    assert (
        main(
            [
                "clip",
                "probe",
                "--data",
                str(data / "captions.csv"),
                "--export",
                str(out / "export"),
                "--out",
                str(probe_json),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "held-out split recorded at training: seed 1, test fraction 0.25" in capsys.readouterr().out
    probed = json.loads(probe_json.read_text())
    assert probed["model"]["trained"] is True and probed["split"]["training_data"] is True
    assert {k: v for k, v in probed["split"].items() if k in results["split"]} == results["split"]
    # The same held-out split and the same model as the training run's own probe: the same accuracies.
    assert {k: v["accuracy"] for k, v in probed["probe"].items()} == {
        k: v["accuracy"] for k, v in results["probe"].items()
    }
    # Another split of the training file would score the probe on training rows: refused.
    for flags, message in (
        (["--seed", "0"], "seed=0 (--seed) differs from the split the model was trained with"),
        (["--test-fraction", "0.2"], "test_fraction=0.2 (--test-fraction) differs"),
        (["--skip-missing"], "skip_missing=True (--skip-missing) differs"),
    ):
        assert (
            main(
                [
                    "clip",
                    "probe",
                    "--data",
                    str(data / "captions.csv"),
                    "--export",
                    str(out / "export"),
                    "--device",
                    "cpu",
                    *flags,
                ]
            )
            == 2
        )
        assert message in capsys.readouterr().err
    # The frozen-towers probe: the towers as loaded, no training.
    assert main(["clip", "probe", "--data", str(data / "captions.csv"), "--config", "tiny", "--device", "cpu"]) == 0
    assert "image+text" in capsys.readouterr().out


def test_internal_errors_are_not_turned_into_error_lines(tmp_path, monkeypatch):
    import factorcl.clip.pretrain

    def broken(*args, **kwargs):
        raise RuntimeError("an internal failure")

    monkeypatch.setattr(factorcl.clip.pretrain, "pretrain_clip", broken)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config()))
    with pytest.raises(RuntimeError, match="an internal failure"):
        main(["clip", "train", "--data", "x.csv", "--config", str(config), "--out", str(tmp_path / "o")])


def test_clear_errors_and_help(tmp_path, capsys):
    assert main(["clip", "probe", "--data", "x.csv", "--model", "ViT-B-23"]) == 2
    err = capsys.readouterr().err
    assert "unknown open_clip model 'ViT-B-23'" in err and "ViT-B-32" in err
    assert main(["clip", "train", "--data", "x.csv", "--out", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config()))
    assert (
        main(
            [
                "clip",
                "train",
                "--data",
                str(tmp_path / "none.csv"),
                "--config",
                str(config),
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "caption file not found" in capsys.readouterr().err
    assert main(["clip"]) == 0
    assert "demo-data" in capsys.readouterr().out


def test_clip_train_reads_a_yaml_run_config_and_set_overrides(tmp_path, capsys, clip_demo):
    """--config run.yaml holds the options by name; options on the command line win over it, --set over both."""
    import yaml

    data = clip_demo(48, seed=1)
    run = tmp_path / "clip.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                "data": str(data),
                "out": str(tmp_path / "r"),
                "config": "tiny",
                "epochs": 3,
                "batch_size": 8,
                "device": "cpu",
                "amp": "none",
                "no_progress": True,
                "no_probe": True,
                "lock_text": True,
                "method": "factorcl-ssl",
            }
        )
    )
    code = main(
        [
            "clip",
            "train",
            "--config",
            str(run),
            "--epochs",
            "1",
            "--set",
            "stop_after=2",
            "--set",
            "num_negatives=15",
            "--set",
            "lock_text=false",
        ]
    )
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["train"]["steps"] == 2 and results["train"]["epochs"] == 1  # --epochs beat the file; --set stop
    assert results["config"]["model"]["num_negatives"] == 15 and results["config"]["lock_text"] is False
    run.write_text(yaml.safe_dump({"data": str(data), "out": str(tmp_path / "s"), "config": "tiny", "lock_txt": 1}))
    assert main(["clip", "train", "--config", str(run)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'lock_txt' in run config" in err and "did you mean 'lock_text'" in err
