"""Evaluation: the k-NN probe, callbacks that get the trainer, evaluation during training, and the
shard workflow of ``factorcl clip`` (demo shards, train with --eval-every, eval of the export)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import factorcl
from factorcl.checkpoint import EVAL_NAME, PLOT_NAME
from factorcl.cli import main
from factorcl.eval_callback import EvalCallback, knn_accuracy
from factorcl.probe import extract_features, representation_parts
from factorcl.train import Callback
from factorcl_helpers import small_data, small_model

KW = dict(lr=3e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu", seed=0)


def test_knn_accuracy_by_hand():
    # Four points on the unit circle at 0, 10, 90 and 100 degrees; labels 0, 0, 1, 0.
    angles = torch.tensor([0.0, 10.0, 90.0, 100.0]).deg2rad()
    x = torch.stack([angles.cos(), angles.sin()], 1)
    y = torch.tensor([0, 0, 1, 0])
    # k=1: each point's nearest other: 0->1 (0, right), 1->0 (0, right), 2->3 (0, wrong), 3->2 (1, wrong).
    assert knn_accuracy(x, y, k=1) == pytest.approx(0.5)
    # k=2, weights cos + 1. Point 2 (label 1): neighbours 3 (cos 10 deg, label 0) and 1 (cos 80 deg,
    # label 0): class 0, wrong. Point 3 (label 0): neighbours 2 (label 1, 1.985) and 1 (label 0,
    # cos 90 + 1 = 1.0): class 1, wrong. Points 0 and 1 have both neighbours of class 0: right.
    assert knn_accuracy(x, y, k=2) == pytest.approx(0.5)
    # k=3 at point 3: label 1 weighs 1.985, label 0 weighs 1.0 + (cos 100 + 1 = 0.826) = 1.826: still 1.
    assert knn_accuracy(x, y, k=3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        knn_accuracy(x[:1], y[:1])


def test_a_callback_gets_the_trainer_and_can_stop_the_run(tmp_path):
    seen = []

    class StopAtThree(Callback):
        def on_step(self, trainer, row):
            seen.append((trainer.step, row["step"], trainer.model is model))
            if trainer.step == 3:
                trainer.stop()

    rows = []
    model = small_model()
    loader = small_data().split("train").loader(64, shuffle=True, drop_last=True, seed=0)
    result = factorcl.fit(model, loader, epochs=5, out_dir=str(tmp_path), callbacks=[StopAtThree(), rows.append], **KW)
    assert result.step == 3 and seen == [(1, 1, True), (2, 2, True), (3, 3, True)]
    assert [r["step"] for r in rows] == [1, 2, 3]  # a plain function still gets the row alone
    assert (tmp_path / "checkpoint.pt").is_file()  # stopped like stop_after: checkpointed
    resumed = factorcl.fit(small_model(), loader, epochs=5, out_dir=str(tmp_path), resume="auto", **KW)
    assert resumed.step == 5 * len(loader)  # the stop was not part of the run's settings


def test_eval_every_writes_the_knn_probe_to_eval_csv(tmp_path):
    data = small_data(num_samples=640)
    valid = data.split("val").loader(64, shuffle=False)
    model = small_model()
    callback = EvalCallback(valid, every=2, max_samples=100, k=5)
    loader = data.split("train").loader(64, shuffle=True, drop_last=True, seed=0)
    result = factorcl.fit(model, loader, epochs=1, out_dir=str(tmp_path), callbacks=[callback], **KW)
    assert result.step == 7
    rows = list(csv.DictReader((tmp_path / EVAL_NAME).open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert {"eval/knn_top1", "eval/knn_top1/S", "eval/knn_top1/U1", "eval/knn_top1/U2"} <= set(rows[0])
    assert (tmp_path / PLOT_NAME).is_file()  # the run drew its picture, evaluation curves included
    # The value at step 6 is the k-NN accuracy of the model as it was then: re-train to step 6, compare.
    again = small_model()
    loader = data.split("train").loader(64, shuffle=True, drop_last=True, seed=0)
    factorcl.fit(again, loader, epochs=1, stop_after=6, **KW)
    feats, labels = extract_features(again, list(valid)[:2], "cpu")
    expected = knn_accuracy(representation_parts(feats)["all"][:100], labels[:100], 5)
    assert float(rows[-1]["eval/knn_top1"]) == pytest.approx(expected)


def test_the_shard_workflow_from_the_command_line(tmp_path, capsys):
    shards = tmp_path / "shards"
    assert main(["clip", "demo-data", str(shards), "--format", "webdataset", "--n", "80", "--shard-size", "10"]) == 0
    assert f"wrote 80 image-caption pairs in 8 shards: {shards}/{{00000..00007}}.tar" in capsys.readouterr().out
    out = tmp_path / "run"
    pattern = str(shards / "{00000..00007}.tar")
    args = ["clip", "train", "--data", pattern, "--config", "tiny", "--out", str(out), "--batch-size", "8"]
    args += ["--device", "cpu", "--no-progress", "--eval-every", "3", "--eval-samples", "16", "--templates", "simple"]
    assert main(args) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    assert "zero-shot top1" in printed and "(%, on 20 held-out pairs)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["split"]["held_out_shards"] == [str(shards / "00006.tar"), str(shards / "00007.tar")]
    assert results["train"]["steps"] == 7  # 60 training pairs / 8
    assert results["eval"]["templates"] == {"source": "simple", "count": 7}
    for when in ("pretrained", "trained"):
        ev = results["eval"][when]
        assert ev["pairs"] == 20 and set(ev["zero_shot"]) == {"top1", "top5"}
        assert set(ev["retrieval"]) == {f"{d}_R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)}
    assert results["data"]["skipped"] == dict.fromkeys(
        ("bad_image", "no_image", "empty_caption", "bad_label", "bad_shard"), 0
    )
    rows = list(csv.DictReader((out / "train" / EVAL_NAME).open()))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert {"eval/knn_top1", "eval/zero_shot_top1", "eval/image_to_text_R@1"} <= set(rows[0])
    # The export, evaluated on the same shards, keeps to the recorded held-out shards: the same figures.
    out_json = tmp_path / "eval.json"
    args = ["clip", "eval", "--export", str(out / "export"), "--data", pattern, "--templates", "simple"]
    assert main([*args, "--device", "cpu", "--no-progress", "--out", str(out_json)]) == 0
    assert "the 2 held-out shard(s) recorded at training" in capsys.readouterr().out
    evaluated = json.loads(out_json.read_text())["eval"]
    trained = results["eval"]["trained"]
    assert evaluated["pairs"] == 20 and evaluated["retrieval"] == pytest.approx(trained["retrieval"])
    assert evaluated["zero_shot"] == pytest.approx(trained["zero_shot"])


def test_to_shards_from_the_command_line(clip_demo, tmp_path, capsys):
    csv_path = clip_demo(24)
    assert main(["clip", "to-shards", str(csv_path), str(tmp_path / "s"), "--shard-size", "10"]) == 0
    assert f"wrote 24 pairs in 3 shards: {tmp_path}/s/{{00000..00002}}.tar" in capsys.readouterr().out
    assert main(["clip", "to-shards", str(csv_path), str(tmp_path / "s")]) == 2
    assert "already holds 3 shard(s)" in capsys.readouterr().err
    assert main(["clip", "train", "--data", str(tmp_path / "s"), "--config", "tiny", "--out", str(tmp_path / "o"),
                 "--val-data", str(tmp_path / "s" / "00000.tar"), "--device", "cpu"]) == 2  # fmt: skip
    assert "--val-data shares 1 shard(s) with --data" in capsys.readouterr().err


def test_a_resume_keeps_the_split_and_the_pretrained_evaluation(tmp_path):
    from factorcl.clip import pretrain_clip, tiny_config, write_demo_shards

    pattern = write_demo_shards(tmp_path / "shards", n=80, shard_size=10)["pattern"]
    kw = dict(config=tiny_config(), batch_size=8, progress=False, device="cpu", probe=False, templates="simple")
    out = tmp_path / "run"
    # --resume auto on a new run is a new run: the pretrained towers are evaluated.
    first = pretrain_clip(pattern, out, resume="auto", stop_after=2, **kw)
    assert set(first["eval"]) == {"pretrained", "trained", "templates"}
    with pytest.raises(ValueError, match="trained with another split.*held_out_shards"):
        pretrain_clip(pattern, out, resume="auto", test_fraction=0.5, **kw)
    resumed = pretrain_clip(pattern, out, resume="auto", **kw)
    assert resumed["train"]["steps"] == 7
    assert resumed["eval"]["pretrained"] == first["eval"]["pretrained"]  # measured once, before training
    assert resumed["split"] == first["split"]
