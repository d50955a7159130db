"""``factorcl clip``: demo data, train (export + probe + results JSON), probe, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from factorcl.cli import main
from factorcl.clip import tiny_config


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_data_train_and_probe_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "demo"
    assert main(["clip", "demo-data", str(data), "--n", "48", "--seed", "1"]) == 0
    assert (data / "captions.csv").is_file() and len(list((data / "images").iterdir())) == 48
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config()))
    out = tmp_path / "run"
    code = main(["clip", "train", "--data", str(data / "captions.csv"), "--config", str(config), "--out", str(out),
                 "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--lock-image", "--unlocked-blocks", "1",
                 "--image-aug", "unique-scored", "--num-candidates", "2", "--text-aug", "mask", "--accumulate", "2",
                 "--grad-checkpointing", "--amp", "none", "--device", "cpu", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "open_clip checkpoint:" in printed and "factorcl:U2" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["lock_image"] is True and results["config"]["image_aug"] == "unique-scored"
    assert results["train"]["steps"] == 2  # 38 training rows -> 4 batches of 8 -> 2 steps of 2 micro-batches
    assert (out / "train" / "metrics.csv").is_file() and (out / "train" / "checkpoint.pt").is_file()
    probe_json = tmp_path / "probe.json"
    assert main(["clip", "probe", "--data", str(data / "captions.csv"), "--export", str(out / "export"),
                 "--out", str(probe_json), "--device", "cpu"]) == 0
    probed = json.loads(probe_json.read_text())
    assert probed["model"]["trained"] is True
    # The same held-out split and the same model as the training run's own probe: the same accuracies.
    assert {k: v["accuracy"] for k, v in probed["probe"].items()} == {k: v["accuracy"] for k, v in results["probe"].items()}
    # Zero-shot baseline: the towers as loaded, no training.
    assert main(["clip", "probe", "--data", str(data / "captions.csv"), "--config", "tiny", "--device", "cpu"]) == 0
    assert "image+text" in capsys.readouterr().out


def test_clear_errors_and_help(tmp_path, capsys):
    assert main(["clip", "probe", "--data", "x.csv", "--model", "ViT-B-23"]) == 2
    err = capsys.readouterr().err
    assert "unknown open_clip model 'ViT-B-23'" in err and "ViT-B-32" in err
    assert main(["clip", "train", "--data", "x.csv", "--out", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config()))
    assert main(["clip", "train", "--data", str(tmp_path / "none.csv"), "--config", str(config), "--out",
                 str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "caption file not found" in capsys.readouterr().err
    assert main(["clip"]) == 0
    assert "demo-data" in capsys.readouterr().out
