"""Every bad input gets an error that names it: files, keys, arguments, and what was expected.

Each test writes its own tiny (bad) input in tmp_path and checks the message, not only the type.
"""

from __future__ import annotations

import csv
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

import augment
import bounds
from factorcl import FactorCL
from factorcl.cli import main
from factorcl.clip import ImageCaptionDataset, pretrain_clip, probe_clip, tiny_config
from factorcl.clip.export import export_split
from factorcl.clip.split import check_same_held_out, split_record
from factorcl.config import load_config, resolve_path
from factorcl.data import load_arrays, load_mimic, load_multibench

PREPROCESS = {"size": (32, 32), "interpolation": "bicubic", "resize_mode": "shortest"}


def _pairs(n: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x1": rng.normal(size=(n, 3)).astype(np.float32),
        "x2": rng.normal(size=(n, 4)).astype(np.float32),
        "y": np.arange(n) % 2,
    }


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ------------------------------------------------------------------ 1. corrupt and truncated files
def test_truncated_npz_names_the_file(tmp_path):
    path = tmp_path / "pairs.npz"
    np.savez(path, **_pairs())
    with pytest.raises(
        ValueError, match=r"could not read .*pairs\.npz: not a valid \.npz file \(truncated or corrupt\?\)"
    ):
        load_arrays(_truncate(path))


def test_npz_that_is_no_zip_archive_names_the_file(tmp_path):
    path = tmp_path / "pairs.npz"
    path.write_bytes(b"x1,x2\n1,2\n")
    with pytest.raises(ValueError, match=r"could not read .*pairs\.npz: not a valid \.npz file .*not a zip archive"):
        load_arrays(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"pairs\.npz: not a valid \.npz file .*the file is empty"):
        load_arrays(path)


def test_single_npy_array_saved_as_npz_is_explained(tmp_path):
    path = tmp_path / "pairs.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"pairs\.npz holds a single \.npy array, not named arrays.*np\.savez"):
        load_arrays(path)


def test_object_array_in_npz_names_the_key(tmp_path):
    path = tmp_path / "pairs.npz"
    np.savez(path, **{**_pairs(), "y": np.array([{"a": 1}] * 20, dtype=object)})
    with pytest.raises(ValueError, match=r"array 'y' in .*pairs\.npz holds Python objects"):
        load_arrays(path)


def test_truncated_pt_names_the_file(tmp_path):
    path = tmp_path / "pairs.pt"
    torch.save({k: torch.as_tensor(v) for k, v in _pairs().items()}, path)
    with pytest.raises(
        ValueError, match=r"could not read .*pairs\.pt: not a valid \.pt file \(truncated or corrupt\?\)"
    ):
        load_arrays(_truncate(path))
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"could not read .*pairs\.pt: not a valid \.pt file"):
        load_arrays(path)


class _Custom:
    pass


def test_pt_holding_python_objects_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "pairs.pt"
    torch.save({"x1": torch.zeros(4, 3), "x2": _Custom()}, path)
    with pytest.raises(
        ValueError,
        match=r"could not read .*pairs\.pt: it holds Python objects \(.*_Custom\) other than "
        r"tensors",
    ):
        load_arrays(path)


@pytest.mark.parametrize(
    "loader, name", [(lambda p: load_multibench(p, dataset="mosi"), "mosi_raw.pkl"), (load_mimic, "im.pk")]
)
@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_pickles_name_the_file(tmp_path, loader, name, damage):
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"train": {"text": np.zeros((50, 4, 3))}}))
    if damage == "truncated":
        _truncate(path)
    else:
        path.write_bytes(b"" if damage == "empty" else b"hello world")
    with pytest.raises(
        ValueError, match=rf"could not read .*{name}: not a valid pickle file \(truncated or corrupt\?\)"
    ):
        loader(path)


def test_string_labels_name_the_key_and_show_values(tmp_path):
    path = tmp_path / "pairs.npz"
    np.savez(path, **{**_pairs(), "y": np.array(["cat", "dog"] * 10)})
    with pytest.raises(ValueError, match=r"y in pairs\.npz holds strings \('cat', 'dog'\); expected integer class ids"):
        load_arrays(path)
    pt = tmp_path / "pairs.pt"  # a .pt file may hold a list of strings
    torch.save({"x1": torch.zeros(4, 3), "x2": torch.zeros(4, 2), "y": ["a", "b", "c", "d"]}, pt)
    with pytest.raises(ValueError, match=r"y in pairs\.pt holds strings \('a', 'b', 'c', \.\.\.\); expected integer"):
        load_arrays(pt)


def test_string_features_name_the_key(tmp_path):
    path = tmp_path / "pairs.npz"
    np.savez(path, **{**_pairs(4), "x1": np.array([["1", "2"]] * 4)})
    with pytest.raises(ValueError, match=r"x1 in pairs\.npz holds strings \('1', '2'\); expected numbers"):
        load_arrays(path)


def test_nan_and_inf_name_the_array_and_rows(tmp_path):
    arrays = _pairs()
    arrays["x1"][3, 0] = np.nan
    arrays["x1"][17, 2] = np.nan
    path = tmp_path / "pairs.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"x1 in pairs\.npz contains NaN at rows \[3, 17\]; clean NaN or inf values"):
        load_arrays(path)
    arrays = _pairs()
    arrays["x2"][np.arange(0, 20, 2), 1] = np.inf
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"x2 in pairs\.npz contains inf at rows \[0, 2, 4, 6, 8\] and 5 more"):
        load_arrays(path)
    arrays = _pairs()
    arrays["y"] = arrays["y"].astype(np.float64)
    arrays["y"][2] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"y in pairs\.npz contains NaN at rows \[2\]; expected integer class ids"):
        load_arrays(path)


def _affect(labels) -> dict:
    rng = np.random.default_rng(0)
    split = {
        "vision": rng.normal(size=(6, 5, 3)),
        "audio": rng.normal(size=(6, 5, 2)),
        "text": rng.normal(size=(6, 5, 4)) + 1.0,
        "labels": labels,
    }
    return {"train": split, "valid": split, "test": split}


def test_multibench_string_and_nan_labels_name_the_split(tmp_path):
    path = tmp_path / "mosi_raw.pkl"
    path.write_bytes(pickle.dumps(_affect(np.array(["pos", "neg"] * 3))))
    with pytest.raises(
        ValueError,
        match=r"train\['labels'\] in mosi_raw\.pkl holds strings \('pos', 'neg'\); "
        r"expected numbers",
    ):
        load_multibench(path)
    path.write_bytes(pickle.dumps(_affect(np.array([0.5, np.nan, 1.0, -1.0, 2.0, 0.1]))))
    with pytest.raises(ValueError, match=r"train\['labels'\] in mosi_raw\.pkl contains NaN at rows \[1\]"):
        load_multibench(path)


def test_mimic_string_labels_name_the_key(tmp_path):
    rng = np.random.default_rng(0)
    data = {
        "ep_tdata": rng.normal(size=(30, 24, 12)),
        "adm_features_all": rng.normal(size=(30, 5)),
        "adm_labels_all": np.array([["dead"] * 6] * 30),
        "y_icd9": np.zeros((30, 20)),
    }
    path = tmp_path / "im.pk"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=r"'adm_labels_all' in im\.pk holds strings \('dead'\); expected numbers"):
        load_mimic(path)


@pytest.mark.parametrize(
    "name, content, offset, line",
    [
        ("pairs.csv", b"image,caption\na.png,caf\xe9 au lait\n", 23, 2),
        ("pairs.csv", b"\xef\xbb\xbfimage,caption\na.png,caf\xe9\n", 26, 2),  # offsets count the byte-order mark
        ("pairs.tsv", b"image\tcaption\n\xffa.png\tx\n", 14, 2),
        ("pairs.jsonl", b'{"image": "a.png", "caption": "ok"}\n{"image": "a.png", "caption": "caf\xe9"}\n', 70, 2),
        ("pairs.json", b'[{"image": "a.png", "caption": "caf\xe9"}]', 35, 1),
    ],
)
def test_caption_files_that_are_not_utf8_name_the_byte(tmp_path, name, content, offset, line):
    path = tmp_path / name
    path.write_bytes(content)
    byte = content[offset]
    with pytest.raises(
        ValueError,
        match=rf"{name} is not UTF-8 \(byte 0x{byte:02x} at offset {offset}, line {line}\); "
        "re-save it as UTF-8",
    ):
        ImageCaptionDataset(path, PREPROCESS)


def test_caption_file_with_a_byte_order_mark_still_reads(tmp_path, clip_demo):
    demo = clip_demo(8)
    shutil.copy(demo.parent / "images" / "00000.png", tmp_path / "a.png")
    path = tmp_path / "pairs.csv"
    path.write_bytes("\ufeffimage,caption\na.png,café au lait\n".encode())
    assert ImageCaptionDataset(path, PREPROCESS).captions == ["café au lait"]


def test_clip_cli_prints_the_encoding_error_as_one_line(tmp_path, capsys):
    data = tmp_path / "pairs.csv"
    data.write_bytes(b"image,caption\na.png,caf\xe9\n")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config()))
    assert (
        main(
            [
                "clip",
                "train",
                "--data",
                str(data),
                "--config",
                str(config),
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "factorcl clip: error:" in err and "pairs.csv is not UTF-8 (byte 0xe9 at offset 23, line 2)" in err


def test_damaged_or_mismatched_clip_checkpoint_names_the_file(tmp_path):
    from factorcl.clip import load_clip, save_open_clip_checkpoint

    checkpoint = save_open_clip_checkpoint(load_clip(config=tiny_config()).model, tmp_path / "clip.pt")
    wider = {**tiny_config(), "embed_dim": 2 * tiny_config()["embed_dim"]}
    with pytest.raises(
        ValueError, match=r"CLIP checkpoint .*clip\.pt does not fit the model config dict: .*size mismatch"
    ):
        load_clip(config=wider, checkpoint=checkpoint)
    with pytest.raises(
        ValueError, match=r"could not read .*clip\.pt: not a valid checkpoint file \(truncated or corrupt\?\)"
    ):
        load_clip(config=tiny_config(), checkpoint=_truncate(checkpoint))


def test_model_config_that_is_not_utf8_names_the_byte(tmp_path):
    from factorcl.clip import load_clip

    path = tmp_path / "model.json"
    path.write_bytes(b'{"embed_dim": "\xe9"}')
    with pytest.raises(ValueError, match=r"model\.json is not UTF-8 \(byte 0xe9 at offset 15, line 1\)"):
        load_clip(config=path)


# ------------------------------------------------------------------ 2. corrupt CLIP images, up front
def _write_csv(path, rows):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize("bad", ["text", "truncated", "empty"])
def test_corrupt_image_is_found_up_front_naming_file_and_row(tmp_path, clip_demo, bad):
    demo = clip_demo(8)
    shutil.copy(demo.parent / "images" / "00000.png", tmp_path / "a.png")
    if bad == "text":
        (tmp_path / "bad.png").write_text("not an image")
    elif bad == "empty":
        (tmp_path / "bad.png").write_bytes(b"")
    else:
        shutil.copy(demo.parent / "images" / "00001.png", tmp_path / "bad.png")
        _truncate(tmp_path / "bad.png")
    rows = [{"image": "a.png", "caption": "a red circle"}, {"image": "bad.png", "caption": "a blue square"}]
    path = _write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(
        ValueError,
        match=r"not a readable image: .*bad\.png \(image='bad\.png' in row 2 \(line 3\) of "
        r".*pairs\.csv\): .*pass skip_missing=True \(--skip-missing\)",
    ):
        ImageCaptionDataset(path, PREPROCESS)


def test_skip_missing_drops_corrupt_images_and_counts_them_apart(tmp_path, clip_demo):
    demo = clip_demo(8)
    shutil.copy(demo.parent / "images" / "00000.png", tmp_path / "a.png")
    (tmp_path / "bad.png").write_text("not an image")
    rows = [
        {"image": "a.png", "caption": "one"},
        {"image": "bad.png", "caption": "two"},
        {"image": "missing.png", "caption": "three"},
        {"image": "a.png", "caption": "four"},
    ]
    path = _write_csv(tmp_path / "pairs.csv", rows)
    with pytest.warns(
        UserWarning,
        match=r"skipped 2 of 4 rows \(1 missing image, 1 bad image\); first unreadable "
        r"image: .*bad\.png \(row 2 \(line 3\)",
    ):
        ds = ImageCaptionDataset(path, PREPROCESS, skip_missing=True)
    assert ds.captions == ["one", "four"]
    assert ds.skipped == {"missing_image": 1, "bad_image": 1, "empty_caption": 0, "missing_label": 0}
    assert ds[1][0].shape == (3, 32, 32)  # the kept rows load


def test_many_images_are_checked_in_a_thread_pool(tmp_path, clip_demo):
    demo = clip_demo(8)
    rows = []
    for i in range(80):  # distinct files: above the thread-pool threshold
        target = tmp_path / f"{i:03d}.png"
        if i in (5, 70):
            target.write_text("broken")
        else:
            shutil.copy(demo.parent / "images" / "00000.png", target)
        rows.append({"image": target.name, "caption": f"picture {i}"})
    path = _write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(ValueError, match=r"not a readable image: .*005\.png .*row 6 \(line 7\)"):
        ImageCaptionDataset(path, PREPROCESS)  # the first bad row in file order
    with pytest.warns(UserWarning, match="2 bad image"):
        ds = ImageCaptionDataset(path, PREPROCESS, skip_missing=True)
    assert len(ds) == 78 and ds.skipped["bad_image"] == 2


@pytest.fixture
def demo_with_bad_image(tmp_path, clip_demo):
    """The 48-row demo data plus one row whose image file is not an image."""
    demo = clip_demo(48, seed=1)
    folder = tmp_path / "data"
    shutil.copytree(demo.parent, folder)
    (folder / "images" / "broken.png").write_text("not an image")
    path = folder / demo.name
    text = path.read_text()
    first = text.splitlines()[1].split(",")
    first[0] = "images/broken.png"
    path.write_text(text + ",".join(first) + "\n")
    return path


def test_skipped_bad_images_reach_results_json_and_the_split_record(demo_with_bad_image, tmp_path):
    out = tmp_path / "run"
    lines: list[str] = []
    with pytest.warns(UserWarning, match="1 bad image"):
        pretrain_clip(
            demo_with_bad_image,
            out,
            config=tiny_config(),
            epochs=1,
            batch_size=8,
            lr=1e-3,
            stop_after=1,
            progress=False,
            device="cpu",
            skip_missing=True,
            test_fraction=0.25,
            log=lines.append,
        )
    written = json.loads((out / "results.json").read_text())
    assert written["data"]["skipped"]["bad_image"] == 1 and written["data"]["pairs"] == 48
    assert written["split"]["skipped"] == written["data"]["skipped"] == export_split(out / "export")["skipped"]
    # The training summary is reported before the probe starts.
    assert lines[0].startswith(f"skipped rows of {demo_with_bad_image}: 1 bad image")
    assert lines[1].startswith("trained 1 steps") and lines[2].startswith("open_clip checkpoint:")
    # Then the zero-shot and retrieval table of the pretrained and trained towers, then the probe.
    assert lines[3].split()[:2] == ["zero-shot", "top1"] and lines[4].startswith("pretrained")
    assert lines[5].startswith("trained") and lines[6] == "(%, on 12 held-out pairs)"
    assert lines[7] == "linear probe: features of 36 train and 12 held-out pairs"
    # The probe re-makes the same split: the same rows are dropped for the same reason.
    from factorcl.clip.export import load_clip_factorcl

    model, bundle = load_clip_factorcl(out / "export")
    with pytest.warns(UserWarning, match="1 bad image"):
        probed = probe_clip(
            bundle,
            demo_with_bad_image,
            model=model,
            recorded_split=export_split(out / "export"),
            device="cpu",
            batch_size=8,
            progress=False,
        )
    assert (
        probed["split"]["training_data"] and probed["split"]["test_rows_sha256"] == written["split"]["test_rows_sha256"]
    )


def test_a_changed_split_names_the_changed_skip_counts(demo_with_bad_image):
    with pytest.warns(UserWarning):
        ds = ImageCaptionDataset(demo_with_bad_image, PREPROCESS, skip_missing=True)
    recorded = split_record(ds, [0, 1, 2], 0, 0.25, True)
    now = {**split_record(ds, [0, 1], 0, 0.25, True), "skipped": {**ds.skipped, "bad_image": 2}}
    with pytest.raises(
        ValueError,
        match=r"held-out rows .* differ .*\(2 vs 3 rows; rows skipped now "
        r"\{.*'bad_image': 2.*\}, at training \{.*'bad_image': 1",
    ):
        check_same_held_out(recorded, now, demo_with_bad_image)


# ------------------------------------------------------------------ 3. clip train --overwrite, progress
def test_clip_train_overwrite_flag_reaches_fit(tmp_path, monkeypatch):
    import factorcl.clip.pretrain

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(factorcl.clip.pretrain, "pretrain_clip", fake)
    base = ["clip", "train", "--data", "x.csv", "--config", "tiny", "--out", str(tmp_path / "o")]
    assert main(base) == 2 and seen["overwrite"] is False
    assert main([*base, "--overwrite"]) == 2 and seen["overwrite"] is True


def test_pretrain_clip_passes_overwrite_to_fit(tmp_path, monkeypatch, clip_demo):
    import factorcl.clip.pretrain

    seen = {}

    def fake_fit(model, loader, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(factorcl.clip.pretrain, "fit", fake_fit)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="stop here"):
            pretrain_clip(
                clip_demo(48, seed=1),
                tmp_path / "o",
                config=tiny_config(),
                batch_size=8,
                device="cpu",
                progress=False,
                overwrite=overwrite,
            )
        assert seen["overwrite"] is overwrite


def _tiny_clip_train(data, out, *extra: str) -> list[str]:
    """``factorcl clip train`` argv: the tiny model, one step of one epoch on the CPU, no progress bars."""
    return [
        "clip",
        "train",
        "--data",
        str(data),
        "--config",
        "tiny",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--stop-after",
        "1",
        "--device",
        "cpu",
        "--amp",
        "none",
        "--no-progress",
        *extra,
    ]


def test_clip_train_refuses_an_existing_run_as_an_error_line_and_overwrite_replaces_it(tmp_path, capsys, clip_demo):
    args = _tiny_clip_train(clip_demo(48, seed=1), tmp_path / "run", "--no-probe")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained 1 steps" in out and "open_clip checkpoint:" in out
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_feature_extraction_shows_progress_unless_turned_off(tmp_path, capsys, clip_demo):
    from clip_helpers import tiny

    bundle = tiny()
    probe_clip(bundle, clip_demo(48, seed=1), device="cpu", batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "features (train)" in err and "features (held-out)" in err
    probe_clip(bundle, clip_demo(48, seed=1), device="cpu", batch_size=8, progress=False)
    assert "features" not in capsys.readouterr().err


def test_clip_train_prints_the_training_summary_before_the_probe(tmp_path, capsys, clip_demo):
    assert main(_tiny_clip_train(clip_demo(48, seed=1), tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert out.index("trained 1 steps") < out.index("linear probe: features of") < out.index("linear probe (held-out")


# ------------------------------------------------------------------ 4. image range
def test_image_augment_refuses_0_255_floats_naming_the_range():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255
    with pytest.raises(
        ValueError,
        match=r"x must be float images with values in \[0, 1\], got min [\d.]+ max 2\d\d"
        r"(\.\d+)?; divide \[0, 255\] images by 255",
    ):
        augment.ImageAugment("unique")(x, generator=0)
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got min -1 max 1$"):
        augment.ImageAugment("standard")(torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8), generator=0)
    # Rounding noise just outside [0, 1] is accepted.
    near = torch.rand(2, 3, 8, 8).clamp(0, 1) * (1 + 1e-4)
    assert augment.ImageAugment("unique")(near, generator=0).shape == near.shape


# ------------------------------------------------------------------ 5. a batch of one
def test_batch_of_one_names_the_batch_size():
    with pytest.raises(
        ValueError,
        match=r"the batch size must be >= 2 for a contrastive estimate \(in-batch "
        r"negatives\), got a batch of 1",
    ):
        bounds.nce_club(torch.randn(1, 1))
    est = bounds.NCECLUB(bounds.SeparableCritic(4, 4, hidden_dim=8))
    with pytest.raises(ValueError, match="batch size must be >= 2 .* got a batch of 1"):
        est(torch.randn(1, 4), torch.randn(1, 4))


# ------------------------------------------------------------------ 6. offset must be an integer
@pytest.mark.parametrize("offset", [2.7, 2.0, "3", True, None, -1])
@pytest.mark.parametrize(
    "fn",
    [
        bounds.infonce,
        bounds.nce_club,
        bounds.check_bracket,
        lambda s, offset: bounds.grouped_infonce(
            s, torch.zeros(4, dtype=torch.long), torch.zeros(8, dtype=torch.long), offset
        ),
    ],
)
def test_non_integer_offset_is_refused_naming_offset(fn, offset):
    with pytest.raises(ValueError, match=r"offset must be an integer >= 0 \(the column of row 0's positive\), got "):
        fn(torch.randn(4, 8), offset=offset)


def test_integer_offsets_of_any_integer_type_work():
    s = torch.randn(4, 8)
    assert torch.equal(bounds.infonce(s, offset=np.int64(2)), bounds.infonce(s, offset=2))


def test_sampled_conditional_refuses_non_integer_offset():
    est = bounds.ConditionalInfoNCE(
        bounds.SeparableCritic(2, 2, hidden_dim=8),
        "sampled",
        proposal=bounds.GaussianProposal(2, 2, 8),
        x_proposal=bounds.GaussianProposal(2, 2, 8),
        num_negatives=4,
    )
    x, y, c = torch.randn(4, 2), torch.randn(8, 2), torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"offset must be an integer >= 0 .*got 1\.5 \(float\)"):
        est(x, y, c, offset=1.5)
    with pytest.raises(ValueError, match=r"offset must be an integer >= 0 .*got 1\.5 \(float\)"):
        est.critic_loss(x, y, c, offset=1.5)


# ------------------------------------------------------------------ 7. supcon_temperature in the Python API
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
@pytest.mark.parametrize("name", ["supcon_temperature", "temperature"])
def test_factorcl_refuses_non_positive_temperatures(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be > 0, got {value}$"):
        FactorCL(
            torch.nn.Linear(4, 4),
            torch.nn.Linear(4, 4),
            4,
            4,
            method="supcon",
            num_classes=2,
            critic="concat",
            **{name: value},
        )


# ------------------------------------------------------------------ 8. FeatureDropout on integers
def test_feature_dropout_refuses_integer_input_as_the_others_do():
    x = torch.arange(12).reshape(3, 4)
    messages = []
    for aug in (augment.FeatureDropout(0.5), augment.GaussianNoise(0.1), augment.Mixup()):
        with pytest.raises(ValueError, match=r"x must be a floating-point tensor, got dtype torch\.int64") as info:
            aug(x, generator=0)
        messages.append(str(info.value))
    assert len(set(messages)) == 1


# ------------------------------------------------------------------ 9. relative data paths
def test_relative_data_path_not_found_lists_every_folder_searched(tmp_path, monkeypatch):
    from factorcl.run import build_data

    (tmp_path / "configs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config = tmp_path / "configs" / "run.yaml"
    config.write_text("data: {kind: arrays, path: data/pairs.npz}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(
        FileNotFoundError,
        match=r"data file not found: data/pairs\.npz \(relative paths are looked up "
        r"in the current folder .*elsewhere and the config's folder "
        r".*configs\)",
    ):
        build_data(load_config(config))
    # Found in the config's folder: loaded from there, as before.
    (tmp_path / "configs" / "data").mkdir()
    np.savez(tmp_path / "configs" / "data" / "pairs.npz", **_pairs())
    assert len(build_data(load_config(config)).train) > 0


def test_resolve_path_without_a_config_folder_names_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match=r"nope\.npz \(relative paths are looked up in the current folder "
        rf"{tmp_path.resolve()}\)",
    ):
        resolve_path("nope.npz")
    (tmp_path / "here.npz").write_bytes(b"")
    assert resolve_path("here.npz", tmp_path / "other") == (tmp_path / "here.npz").resolve()
