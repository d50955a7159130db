"""factorcl.clip data: the demo generator, CSV/JSONL reading and its errors, collation, splits, text views."""

from __future__ import annotations

import csv
import json
import shutil

import open_clip
import pytest
import torch

from factorcl.clip import (
    ClipTextAugment,
    ImageCaptionDataset,
    make_loader,
    token_ids,
    train_test_split,
    write_demo_dataset,
)
from factorcl.clip.demo_data import COLORS, SHAPES
from factorcl.clip.split import (
    SPLIT_DEFAULTS,
    check_same_held_out,
    held_out_split,
    probe_split_settings,
    split_record,
)

PREPROCESS = {
    "size": (32, 32),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}


@pytest.fixture(scope="module")
def demo(clip_demo):
    return clip_demo(40, seed=3)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_demo_dataset_is_deterministic_and_captions_say_less_than_the_images(demo, tmp_path):
    rows = _rows(demo)
    assert len(rows) == 40 and set(rows[0]) == {"image", "caption", "label", "mentioned", "background"}
    again = write_demo_dataset(tmp_path, n=40, seed=3)
    assert _rows(again) == rows
    assert (demo.parent / rows[0]["image"]).read_bytes() == (again.parent / rows[0]["image"]).read_bytes()
    mentioned = [r for r in rows if r["mentioned"] == "1"]
    assert 0 < len(mentioned) < len(rows)  # the label is in some captions, not all
    for r in rows:
        assert r["label"] in SHAPES
        assert any(c in r["caption"] for c in COLORS) and any(s in r["caption"] for s in SHAPES)
        assert r["background"] not in r["caption"] and "left" not in r["caption"]
        if r["mentioned"] == "0":  # one object only: the label is the other one's shape
            assert sum(r["caption"].count(s) for s in SHAPES) == 1


def test_dataset_items_are_unnormalised_images_at_the_model_size(demo):
    ds = ImageCaptionDataset(demo, PREPROCESS)
    assert len(ds) == 40 and ds.classes == sorted(SHAPES) and ds.num_classes == 3
    image, caption, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.max()) > 0.5
    assert caption == _rows(demo)[0]["caption"] and ds.classes[label] == _rows(demo)[0]["label"]


def test_loader_batches_tokens_images_and_labels_with_workers(demo):
    ds = ImageCaptionDataset(demo, PREPROCESS)
    tok = open_clip.SimpleTokenizer(context_length=16)
    loader = make_loader(ds, tok, batch_size=8, num_workers=2, seed=1)
    batches = list(loader)
    assert len(batches) == 5
    b = batches[0]
    assert set(b) == {"x1", "x2", "y"}
    assert b["x1"].shape == (8, 16) and b["x1"].dtype == torch.long
    assert b["x2"].shape == (8, 3, 32, 32) and b["y"].shape == (8,)
    assert bool((b["x1"][:, 0] == tok.sot_token_id).all())
    # Same seed, same order (the trainer's exact resume relies on the loader's own generator).
    again = next(iter(make_loader(ds, tok, batch_size=8, seed=1)))
    assert torch.equal(again["x1"], b["x1"]) and torch.equal(again["y"], b["y"])
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_loader(ds, tok, batch_size=64)


def _write_csv(path, rows, fields=("image", "caption", "label")):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
    return path


def test_missing_images_name_the_file_and_row_or_are_skipped_and_counted(demo, tmp_path):
    shutil.copy(demo.parent / "images" / "00000.png", tmp_path / "a.png")
    rows = [
        {"image": "a.png", "caption": "a red circle", "label": "0"},
        {"image": "missing.png", "caption": "a blue square", "label": "1"},
        {"image": "a.png", "caption": "a green triangle", "label": "1"},
    ]
    path = _write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(FileNotFoundError, match=r"missing\.png.*row 2 \(line 3\) of .*pairs\.csv"):
        ImageCaptionDataset(path, PREPROCESS)
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 rows \(1 missing image\)"):
        ds = ImageCaptionDataset(path, PREPROCESS, skip_missing=True)
    assert len(ds) == 2 and ds.skipped["missing_image"] == 1
    assert ds.classes == ["0", "1"] and ds.labels == [0, 1]  # integer labels, mapped to 0..K-1


def test_empty_captions_and_missing_columns_are_errors(demo, tmp_path):
    shutil.copy(demo.parent / "images" / "00000.png", tmp_path / "a.png")
    rows = [{"image": "a.png", "caption": "a red circle"}, {"image": "a.png", "caption": "   "}]
    path = _write_csv(tmp_path / "pairs.csv", rows, fields=("image", "caption"))
    with pytest.raises(ValueError, match=r"empty caption in row 2 \(line 3\)"):
        ImageCaptionDataset(path, PREPROCESS)
    with pytest.warns(UserWarning, match="1 empty caption"):
        ds = ImageCaptionDataset(path, PREPROCESS, skip_missing=True)
    assert len(ds) == 1 and ds.num_classes is None and ds.skipped["empty_caption"] == 1
    batch = next(iter(make_loader(ds, open_clip.SimpleTokenizer(context_length=16), 1, shuffle=False)))
    assert "y" not in batch  # no label column: unlabelled batches
    bad = _write_csv(tmp_path / "bad.csv", [{"img": "a.png", "text": "x"}], fields=("img", "text"))
    with pytest.raises(ValueError, match=r"no 'image' column; its columns are \['img', 'text'\]"):
        ImageCaptionDataset(bad, PREPROCESS)
    with pytest.raises(ValueError, match="unsupported file type"):
        ImageCaptionDataset(tmp_path / "a.png", PREPROCESS)


def test_jsonl_with_paths_relative_to_the_file(demo, tmp_path):
    sub = tmp_path / "data"
    (sub / "img").mkdir(parents=True)
    shutil.copy(demo.parent / "images" / "00001.png", sub / "img" / "b.png")
    lines = [
        {"image": "img/b.png", "caption": "a cat", "label": "cat"},
        {"image": str(sub / "img" / "b.png"), "caption": "a dog", "label": "dog"},
    ]
    path = sub / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds = ImageCaptionDataset(path, PREPROCESS)
    assert ds.captions == ["a cat", "a dog"] and ds.classes == ["cat", "dog"]
    path.write_text(json.dumps(lines[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        ImageCaptionDataset(path, PREPROCESS)
    # .json: one array of objects; JSON Lines content in a .json file gets a hint.
    array = sub / "pairs.json"
    array.write_text(json.dumps(lines, indent=2))
    ds = ImageCaptionDataset(array, PREPROCESS)
    assert ds.captions == ["a cat", "a dog"] and ds.classes == ["cat", "dog"] and ds.records[1].line is None
    array.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(ValueError, match=r"not valid JSON \(Extra data.*name the file .jsonl"):
        ImageCaptionDataset(array, PREPROCESS)
    array.write_text(json.dumps({"image": "img/b.png", "caption": "a cat"}))
    with pytest.raises(
        ValueError, match="must hold an array of objects .* got dict; for one object per line use .jsonl"
    ):
        ImageCaptionDataset(array, PREPROCESS)
    array.write_text(json.dumps([lines[0], "a dog"]))
    with pytest.raises(ValueError, match="element 2 of the array must be a JSON object, got str"):
        ImageCaptionDataset(array, PREPROCESS)
    array.write_text(json.dumps([{"image": "img/b.png", "caption": ""}]))
    with pytest.raises(ValueError, match=r"empty caption in row 1 of .*pairs.json;"):
        ImageCaptionDataset(array, PREPROCESS)


def test_probe_split_settings_follow_the_recorded_split_on_the_training_file(demo, tmp_path):
    ds = ImageCaptionDataset(demo, PREPROCESS)
    train, test = held_out_split(ds, 0.25, 1)
    recorded = split_record(ds, test, 1, 0.25, False)
    assert recorded["test_rows"] == len(test) and recorded["test_fraction"] == 0.25
    # The training file: recorded settings by default, equal ones accepted, others refused.
    assert probe_split_settings(recorded, demo) == ({"seed": 1, "test_fraction": 0.25, "skip_missing": False}, True)
    assert probe_split_settings(recorded, demo, seed=1, test_fraction=0.25)[0]["seed"] == 1
    with pytest.raises(ValueError, match=r"seed=0 \(--seed\) differs .* \(seed=1\)"):
        probe_split_settings(recorded, demo, seed=0)
    with pytest.raises(ValueError, match=r"test_fraction=0.2 \(--test-fraction\) differs"):
        probe_split_settings(recorded, demo, test_fraction=0.2)
    # Trained on every row of the file: nothing to probe on.
    everything = split_record(ds, held_out_split(ds, 0.0, 0)[1], 0, 0.0, False)
    assert everything["test_rows"] == 0
    with pytest.raises(ValueError, match="trained on every row"):
        probe_split_settings(everything, demo)
    # Another file (other content): the given settings, defaults for the rest.
    other = tmp_path / "captions.csv"
    other.write_text(demo.read_text().replace("\n", "\r\n", 1))
    assert probe_split_settings(recorded, other, seed=3) == (
        {"seed": 3, "test_fraction": 0.2, "skip_missing": False},
        False,
    )
    assert probe_split_settings(None, demo) == (SPLIT_DEFAULTS, False)
    # The re-made split must hold out the recorded rows.
    check_same_held_out(recorded, split_record(ds, test, 1, 0.25, False), demo)
    with pytest.raises(ValueError, match="held-out rows .* differ from the ones recorded"):
        check_same_held_out(recorded, split_record(ds, held_out_split(ds, 0.25, 2)[1], 1, 0.25, False), demo)


def test_train_test_split_is_stratified_disjoint_and_seeded():
    labels = [0] * 10 + [1] * 5 + [2] * 2
    train, test = train_test_split(labels, 0.2, seed=0)
    assert sorted(train + test) == list(range(17)) and not set(train) & set(test)
    for c in (0, 1, 2):  # every class on both sides
        assert any(labels[i] == c for i in train) and any(labels[i] == c for i in test)
    assert train_test_split(labels, 0.2, seed=0) == (train, test)
    tr, te = train_test_split(20, 0.25, seed=1)
    assert len(te) == 5 and len(tr) == 15


@pytest.mark.parametrize("mode", ["delete", "mask"])
def test_text_views_never_touch_padding_or_special_tokens(mode):
    tok = open_clip.SimpleTokenizer(context_length=16)
    tokens = tok(["a red circle and a blue square", "hello! world!", "x"])
    aug = ClipTextAugment(token_ids(tok), mode=mode, p=0.5)
    gen = torch.Generator().manual_seed(0)
    out = aug(tokens, generator=gen)
    assert out.shape == tokens.shape and not torch.equal(out, tokens)
    assert torch.equal(tokens, tok(["a red circle and a blue square", "hello! world!", "x"]))  # input untouched
    for row_in, row_out in zip(tokens, out):
        assert row_out[0] == tok.sot_token_id
        n_in = int((row_in == tok.eot_token_id).nonzero()[0])
        n_out = int((row_out == tok.eot_token_id).nonzero()[0])
        assert bool((row_out[n_out + 1 :] == 0).all())  # padding stays padding
        assert n_out == n_in if mode == "mask" else n_out <= n_in
    assert torch.equal(ClipTextAugment(token_ids(tok), mode=mode, p=0.0)(tokens), tokens)
    assert torch.equal(ClipTextAugment(token_ids(tok), mode="none")(tokens), tokens)


def test_content_tokens_with_the_padding_id_are_kept_in_place():
    tok = open_clip.SimpleTokenizer(context_length=8)
    sot, eot = tok.sot_token_id, tok.eot_token_id
    # id 0 is also a BPE piece of CLIP's vocabulary: inside the text it is content, not padding.
    tokens = torch.tensor([[sot, 320, 0, 736, eot, 0, 0, 0]])
    out = ClipTextAugment(token_ids(tok), mode="delete", p=1.0)(tokens)
    assert out.tolist() == [[sot, 0, eot, 0, 0, 0, 0, 0]]
