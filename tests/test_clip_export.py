"""factorcl.clip export: the towers reload in plain open_clip with equal outputs; the heads rebuild the model."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

import factorcl
from clip_helpers import batch_of, tiny
from factorcl.clip import (
    ImageCaptionDataset,
    build_clip_factorcl,
    export_clip_factorcl,
    factorcl_features,
    load_clip_factorcl,
    make_loader,
    save_open_clip_checkpoint,
    tiny_config,
)
from factorcl.clip.pretrain import ClipFactorCLConfig


@pytest.fixture(scope="module")
def trained(clip_demo):
    """A tiny CLIP after a few FactorCL-SSL steps (so its weights differ from any fresh init), and a batch."""
    demo = clip_demo(32)
    bundle = tiny(name="clip-test-export")
    config = ClipFactorCLConfig(method="factorcl-ssl")
    model = build_clip_factorcl(bundle, config)
    ds = ImageCaptionDataset(demo, bundle.preprocess_cfg)
    factorcl.fit(
        model, make_loader(ds, bundle.tokenizer, 8), epochs=1, lr=1e-3, stop_after=2, progress=False, device="cpu"
    )
    model.eval()
    return bundle, model, config, batch_of(bundle, demo)


def _outputs(clip, batch, bundle):
    mean = torch.tensor(bundle.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return clip.encode_image((batch["x2"] - mean) / std), clip.encode_text(batch["x1"]), clip.logit_scale.detach()


def test_checkpoint_loads_in_open_clip_create_model_with_equal_outputs(trained, tmp_path):
    bundle, _, _, batch = trained
    path = save_open_clip_checkpoint(bundle.model, tmp_path / "clip.bin")
    ref = _outputs(bundle.model, batch, bundle)
    with bundle.registered() as name:  # a custom config: open_clip must know the name while creating
        torch.manual_seed(123)
        reloaded = open_clip.create_model(name, pretrained=str(path)).eval()
    for a, b in zip(ref, _outputs(reloaded, batch, bundle)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert "clip-test-export" not in open_clip.list_models()


def test_export_folder_loads_as_local_dir_and_rebuilds_the_factorcl_model(trained, tmp_path):
    bundle, model, config, batch = trained
    paths = export_clip_factorcl(model, bundle, tmp_path / "export", config)
    assert {p.name for p in (tmp_path / "export").iterdir()} == {
        "open_clip_pytorch_model.bin",
        "open_clip_config.json",
        "clip-test-export.json",
        "factorcl_heads.pt",
    }
    assert json.loads(paths["model_config"].read_text()) == tiny_config()
    # open_clip alone: config and weights from the folder, tokenizer with the config's context length.
    local = open_clip.create_model(f"local-dir:{tmp_path / 'export'}").eval()
    assert open_clip.get_tokenizer(f"local-dir:{tmp_path / 'export'}").context_length == 16
    for a, b in zip(_outputs(bundle.model, batch, bundle), _outputs(local, batch, bundle)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # factorcl: the whole model (towers + heads + critics) back, same representations and loss terms.
    rebuilt, rebundle = load_clip_factorcl(tmp_path / "export")
    rebuilt.eval()
    assert rebundle.preprocess_cfg["size"] == (32, 32) or list(rebundle.preprocess_cfg["size"]) == [32, 32]
    with torch.no_grad():
        a, b = model.embed(batch["x1"], batch["x2"]), rebuilt.embed(batch["x1"], batch["x2"])
    for key in ("s1", "s2", "u1", "u2"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    # Every head and critic parameter is back (the trained values: critics were updated by fit).
    params, reparams = dict(model.named_parameters()), dict(rebuilt.named_parameters())
    assert params.keys() == reparams.keys() and any(k.startswith("estimators.") for k in params)
    for key, value in params.items():
        torch.testing.assert_close(reparams[key], value, rtol=0, atol=0, msg=key)
    # The same loss terms on a batch that brings its own views (no random augmentation).
    fixed = {**batch, "x1_aug": batch["x1"].flip(0), "x2_aug": batch["x2"].flip(-1)}
    with torch.no_grad():  # the same seed: the sampled conditioning draws its negatives at random
        torch.manual_seed(0)
        loss, terms = model.loss(fixed)
        torch.manual_seed(0)
        reloss, reterms = rebuilt.loss(fixed)
    torch.testing.assert_close(reloss, loss, rtol=0, atol=1e-5)
    assert terms.keys() == reterms.keys() and "unique_cond_keep" in terms
    for key in terms:
        torch.testing.assert_close(reterms[key], terms[key], rtol=0, atol=1e-5, msg=key)
    heads = torch.load(paths["heads"], weights_only=False)
    assert heads["config"]["model"]["method"] == "factorcl-ssl" and heads["modalities"] == {"x1": "text", "x2": "image"}
    assert not any(k.startswith(("encoder1.", "encoder2.")) for k in heads["state_dict"])


def test_load_clip_factorcl_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a factorcl CLIP export"):
        load_clip_factorcl(tmp_path)


def test_probe_features_match_the_models_embed_in_eval_mode_and_restore_the_mode(trained):
    bundle, model, _, batch = trained
    with torch.no_grad():
        reps = model.embed(batch["x1"], batch["x2"])
        image = torch.nn.functional.normalize(model.encoder2(batch["x2"]), dim=-1)
    model.train()
    try:
        feats, labels = factorcl_features(model, [batch], device="cpu")
        assert model.training is True  # the caller's mode is restored
    finally:
        model.eval()
    for key in ("s1", "s2", "u1", "u2"):
        torch.testing.assert_close(feats[key], reps[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(feats["image"], image, rtol=0, atol=1e-6)
    assert torch.equal(labels, batch["y"])


def test_clip_config_keeps_the_earlier_flat_api():
    config = ClipFactorCLConfig("simclr", factorcl_kwargs={"num_negatives": 63}, lock_text=True)
    assert config.method == "simclr" and config.model.num_negatives == 63 and config.embed_dim is None
    config.method = "factorcl-ssl"  # sets (and validates) the held FactorCLConfig
    assert config.model.method == "factorcl-ssl" and config.lock_text is True
    with pytest.raises(ValueError, match="method must be one of"):
        config.method = "factorcl"
