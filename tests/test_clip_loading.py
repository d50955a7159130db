"""factorcl.clip.loading: model sources, the isolated config registry, tokenizer ids, bad names."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip import factory

from factorcl.clip import load_clip, read_config, registered_config, resolve_model_name, tiny_config, token_ids


def test_registered_config_is_removed_after_the_block_and_on_errors():
    before = dict(factory._MODEL_CONFIGS)
    with registered_config(tiny_config(), "clip-test-tiny") as name:
        assert name == "clip-test-tiny" and name in open_clip.list_models()
        assert open_clip.get_model_config(name)["embed_dim"] == 32
    assert "clip-test-tiny" not in open_clip.list_models()
    with pytest.raises(RuntimeError, match="boom"), registered_config(tiny_config(), "clip-test-tiny"):
        raise RuntimeError("boom")
    assert factory._MODEL_CONFIGS == before


def test_registered_config_refuses_to_replace_a_builtin_and_names_by_content():
    with pytest.raises(ValueError, match="different config"), registered_config(tiny_config(), "ViT-B-32"):
        pass
    assert open_clip.get_model_config("ViT-B-32")["embed_dim"] == 512
    with registered_config(tiny_config()) as a, registered_config(tiny_config(embed_dim=16)) as b:
        assert a != b and a.startswith("factorcl-custom-")
    assert a not in open_clip.list_models() and b not in open_clip.list_models()


def test_load_from_config_dict_and_both_json_layouts(tmp_path):
    torch.manual_seed(0)
    bundle = load_clip(config=tiny_config(), name="clip-test-a")
    assert bundle.name == "clip-test-a" and not bundle.builtin
    assert "clip-test-a" not in open_clip.list_models()  # registered only while loading
    assert bundle.embed_dim == 32 and bundle.image_size == (32, 32) and bundle.context_length == 16
    assert bundle.tokenizer(["a red circle"]).shape == (1, 16)
    out = bundle.model.encode_image(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 32)

    bare = tmp_path / "my-tiny.json"
    bare.write_text(json.dumps(tiny_config()))
    assert load_clip(config=bare).name == "my-tiny"
    wrapped = tmp_path / "open_clip_config.json"
    wrapped.write_text(
        json.dumps({"model_cfg": tiny_config(), "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})
    )
    model_cfg, preprocess = read_config(wrapped)
    assert model_cfg == tiny_config() and preprocess["std"] == [0.25, 0.25, 0.25]
    bundle = load_clip(config=wrapped, name="clip-test-b")
    assert bundle.mean == (0.5, 0.5, 0.5) and bundle.std == (0.25, 0.25, 0.25)


def test_load_from_local_checkpoint(tmp_path):
    torch.manual_seed(0)
    a = load_clip(config=tiny_config(), name="clip-test-c")
    path = tmp_path / "weights.pt"
    torch.save(a.model.state_dict(), path)
    torch.manual_seed(1)
    b = load_clip(config=tiny_config(), name="clip-test-c", checkpoint=path)
    assert b.source.startswith("checkpoint")
    for (k, v), (k2, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_clip(config=tiny_config(), checkpoint=tmp_path / "nope.pt")


def test_unknown_model_names_and_tags_list_close_matches():
    with pytest.raises(ValueError, match=r"unknown open_clip model 'ViT-B-23'.*ViT-B-32"):
        load_clip("ViT-B-23")
    with pytest.raises(ValueError, match="RN50"):
        resolve_model_name("RN-50")
    assert resolve_model_name("vit-b-32") == "ViT-B-32"
    assert resolve_model_name("ViT/B-32") == "ViT-B-32"
    # A tag that is neither known nor a file fails before anything is downloaded.
    with pytest.raises(ValueError, match=r"unknown pretrained tag 'openai2'.*openai"):
        load_clip("ViT-B-32", pretrained="openai2")
    with pytest.raises(ValueError, match="not a model config|lacks"):
        read_config({"embed_dim": 8})
    with pytest.raises(ValueError, match="model name"):
        load_clip()


def test_token_ids_of_the_clip_tokenizer():
    tok = open_clip.SimpleTokenizer(context_length=16)
    ids = token_ids(tok)
    assert ids.pad_id == 0 and ids.eot_id == tok.eot_token_id
    assert set(ids.special_ids) == {tok.sot_token_id, tok.eot_token_id} and ids.mask_id is None
