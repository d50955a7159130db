"""factorcl.clip pretraining: every method on the towers, loss going down on the demo data, the one-call run."""

from __future__ import annotations

import json
import math

import pytest
import torch

import factorcl
from clip_helpers import batch_of, tiny
from factorcl.clip import (
    ImageCaptionDataset,
    build_clip_factorcl,
    make_loader,
    pretrain_clip,
    tiny_config,
    train_test_split,
)
from factorcl.clip.export import export_split
from factorcl.clip.split import split_record


@pytest.fixture(scope="module")
def demo(clip_demo):
    return clip_demo(64)


@pytest.mark.parametrize(
    "method, image_aug",
    [
        ("factorcl-ssl", "unique-preset"),
        ("factorcl-ssl", "unique-scored"),
        ("factorcl-ssl", "standard"),
        ("factorcl-sup", "unique-preset"),
        ("ourcl-ssl", "unique-preset"),
        ("cross+self", "unique-preset"),
        ("cross+self+fact", "unique-preset"),
        ("supcon", "unique-preset"),
    ],
)
def test_every_method_runs_on_the_towers(demo, method, image_aug):
    b = tiny()
    ds = ImageCaptionDataset(demo, b.preprocess_cfg)
    model = build_clip_factorcl(b, method=method, image_aug=image_aug, num_classes=ds.num_classes, num_candidates=2)
    batch = next(iter(make_loader(ds, b.tokenizer, 8, shuffle=False)))
    loss, metrics = model.loss(batch)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in metrics.values())
    loss.backward()
    assert b.model.visual.conv1.weight.grad is not None and b.model.token_embedding.weight.grad is not None
    assert torch.isfinite(model.critic_loss())


@pytest.mark.parametrize("method", ["factorcl-ssl", "simclr"])
def test_loss_decreases_over_a_few_steps_on_the_demo_data(demo, method):
    b = tiny()
    ds = ImageCaptionDataset(demo, b.preprocess_cfg)
    # The in-batch chain conditioning: the default "sampled" one fits its Gaussian proposals on the
    # batches first (c has 2 x 128 dimensions, a batch 16 rows), so over 12 steps of batch 16 its
    # terms are noise and the loss does not trend; this test is about the towers learning.
    model = build_clip_factorcl(b, method=method, conditioning="chain" if method == "factorcl-ssl" else None)
    result = factorcl.fit(
        model, make_loader(ds, b.tokenizer, 16, seed=0), epochs=3, lr=1e-3, seed=0, progress=False, device="cpu"
    )
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


def test_pretrain_clip_trains_exports_probes_and_resumes(demo, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config()))
    out = tmp_path / "run"
    kwargs = dict(
        config=cfg,
        epochs=2,
        batch_size=16,
        lr=1e-3,
        progress=False,
        device="cpu",
        seed=0,
        method="factorcl-ssl",
        lock_text=True,
        unlocked_blocks=1,
    )
    results = pretrain_clip(demo, out, stop_after=2, **kwargs)
    assert json.loads((out / "results.json").read_text())["train"]["steps"] == results["train"]["steps"] == 2
    assert results["data"]["train"] + results["data"]["test"] == 64 and results["modalities"]["x1"] == "text"
    assert set(results["probe"]) == {
        "image+text",
        "image",
        "text",
        "factorcl:all",
        "factorcl:S",
        "factorcl:U1",
        "factorcl:U2",
    }
    for r in results["probe"].values():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["num_classes"] == 3
    for key in ("checkpoint", "config", "heads", "model_config"):
        assert (out / "export").joinpath(results["export"][key].split("/")[-1]).is_file()
    # resume="auto" continues from out/train/checkpoint.pt to the end of the 2 epochs (3 steps each).
    resumed = pretrain_clip(demo, out, resume="auto", probe=False, **kwargs)
    assert resumed["train"]["steps"] == 6 and resumed["probe"] is None
    # The same held-out rows (never trained on), recorded in results.json and in the export.
    ds = ImageCaptionDataset(demo, {"size": 32})
    expected = split_record(ds, train_test_split(ds.labels, 0.2, 0)[1], 0, 0.2, False)
    other_seed = split_record(ds, train_test_split(ds.labels, 0.2, 1)[1], 1, 0.2, False)
    assert expected["test_rows_sha256"] != other_seed["test_rows_sha256"]
    assert results["split"] == resumed["split"] == expected
    assert export_split(out / "export") == expected


def test_supervised_methods_need_labels(demo, tmp_path):
    rows = demo.read_text().splitlines()
    unlabelled = demo.parent / "unlabelled.csv"
    unlabelled.write_text("\n".join(",".join(r.split(",")[:2]) for r in rows) + "\n")
    with pytest.raises(ValueError, match="supervised"):
        pretrain_clip(
            unlabelled, tmp_path / "x", config=tiny_config(), method="factorcl-sup", progress=False, device="cpu"
        )


def test_bf16_autocast_step_is_finite_and_close_to_fp32(demo):
    b = tiny()
    model = build_clip_factorcl(b, method="simclr")
    batch = batch_of(b, demo)
    _, ref = model.loss(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = model.loss(batch)
    assert torch.isfinite(loss) and abs(float(metrics["shared_keep"]) - float(ref["shared_keep"])) < 0.05
    # CLIP's logits are computed in float32 even under autocast.
    critic = model.estimators["shared_keep"].critic
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(torch.randn(4, 32), torch.randn(4, 32)).dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_steps_on_cuda_with_bf16_and_checkpointing(demo):
    b = tiny()
    ds = ImageCaptionDataset(demo, b.preprocess_cfg)
    model = build_clip_factorcl(
        b, method="factorcl-ssl", image_aug="unique-scored", grad_checkpointing=True, num_candidates=2
    )
    result = factorcl.fit(
        model, make_loader(ds, b.tokenizer, 16), epochs=1, lr=1e-3, amp="bf16", device="cuda", progress=False
    )
    assert result.step == 4 and all(math.isfinite(v) for v in result.metrics.values())
    assert next(b.model.parameters()).device.type == "cuda"
