"""webdataset shards: writing (to-shards, demo data), reading, the split over ranks and workers, corrupt
samples, resume, and training on them under two gloo processes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

import factorcl
from clip_helpers import tiny
from factorcl.clip import ImageCaptionDataset, build_clip_factorcl, image_transform
from factorcl.clip.shards import (
    SHARD_SKIP_REASONS,
    ShardDataset,
    expand_shards,
    is_shard_spec,
    make_shard_loader,
    write_shards,
)
from factorcl.clip.to_shards import captions_to_shards, write_demo_shards
from test_distributed_helpers import run_ranks

TRANSFORM = image_transform({"size": 16})


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value % 256, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def unique_shards(folder: Path, n: int = 48, shard_size: int = 6, classes: bool = True) -> str:
    """``n`` pairs with captions ``pair 0``, ``pair 1``, ... in shards of ``shard_size``; returns the pattern."""
    samples = ((png(i), "png", f"pair {i}", i % 3 if classes else None) for i in range(n))
    shards = write_shards(samples, folder, shard_size=shard_size, classes=["a", "b", "c"] if classes else None)
    return str(folder / f"{{{shards[0].stem}..{shards[-1].stem}}}.tar")


def epoch_captions(dataset: ShardDataset, num_workers: int, epoch: int = 0) -> list[list[str]]:
    """The epoch's batches (caption lists) as the DataLoader delivers them."""
    dataset.set_epoch(epoch)
    dataset.check_workers(num_workers)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=dataset.batch_size,
        num_workers=num_workers,
        collate_fn=lambda items: [c for _, c, _ in items],
    )
    return list(loader)


def test_to_shards_keeps_every_pair_caption_and_label(clip_demo, tmp_path):
    csv_path = clip_demo(30)
    summary = captions_to_shards(csv_path, tmp_path / "shards", shard_size=8, shuffle=False)
    assert summary["samples"] == 30 and len(summary["shards"]) == 4
    assert summary["pattern"] == str(tmp_path / "shards" / "{00000..00003}.tar")
    assert json.loads((tmp_path / "shards" / "sizes.json").read_text()) == {
        "00000.tar": 8,
        "00001.tar": 8,
        "00002.tar": 8,
        "00003.tar": 6,
    }
    reference = ImageCaptionDataset(csv_path, {"size": 16})
    assert json.loads((tmp_path / "shards" / "classes.json").read_text()) == reference.classes
    stream = ShardDataset(summary["pattern"], TRANSFORM, batch_size=1, shuffle=False)
    items = list(stream)
    assert [c for _, c, _ in items] == reference.captions
    assert [y for _, _, y in items] == reference.labels
    for (image, _, _), (expected, _, _) in zip(items, reference):
        torch.testing.assert_close(image, expected)  # the same PNG bytes, the same preprocessing
    shuffled = captions_to_shards(csv_path, tmp_path / "shuffled", shard_size=8)  # the default: a seeded shuffle
    captions = [c for _, c, _ in ShardDataset(shuffled["pattern"], TRANSFORM, batch_size=1, shuffle=False)]
    assert sorted(captions) == sorted(reference.captions) and captions != reference.captions
    with pytest.raises(FileExistsError, match="already holds 4 shard"):
        captions_to_shards(csv_path, tmp_path / "shards", shard_size=8)
    captions_to_shards(csv_path, tmp_path / "shards", shard_size=30, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == ["00000.tar"]


def test_demo_shards_and_shard_specs(tmp_path):
    summary = write_demo_shards(tmp_path / "demo", n=20, shard_size=5)
    assert summary["samples"] == 20 and summary["classes"] == ["circle", "square", "triangle"]
    assert is_shard_spec(summary["pattern"]) and is_shard_spec(tmp_path / "demo")
    assert not is_shard_spec(tmp_path / "captions.csv")
    assert expand_shards(tmp_path / "demo") == expand_shards(summary["pattern"])
    with pytest.raises(FileNotFoundError, match=r"1 of 5 shards .* not found: .*00004\.tar"):
        expand_shards(str(tmp_path / "demo" / "{00000..00004}.tar"))
    with pytest.raises(FileNotFoundError, match="2 of 6 shards"):
        expand_shards(str(tmp_path / "demo" / "{00000..00005}.tar"))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_epoch_reads_every_sample_once_and_epochs_reorder(tmp_path, num_workers):
    pattern = unique_shards(tmp_path, n=48, shard_size=6)
    dataset = ShardDataset(pattern, TRANSFORM, batch_size=4, seed=3)
    assert len(dataset) == 48 and dataset.batches == 12 and dataset.num_classes == 3
    first = epoch_captions(dataset, num_workers, epoch=0)
    assert len(first) == 12 and all(len(b) == 4 for b in first)
    flat = [c for b in first for c in b]
    assert sorted(flat) == sorted(f"pair {i}" for i in range(48))
    assert epoch_captions(dataset, num_workers, epoch=0) == first  # deterministic for (seed, epoch)
    second = [c for b in epoch_captions(dataset, num_workers, epoch=1) for c in b]
    assert sorted(second) == sorted(flat) and second != flat


def test_the_shards_split_over_ranks_without_overlap(tmp_path):
    pattern = unique_shards(tmp_path, n=48, shard_size=6)
    seen = []
    for rank in range(2):
        dataset = ShardDataset(pattern, TRANSFORM, batch_size=4, world_size=2, rank=rank)
        assert len(dataset) == 24
        seen.append([c for b in epoch_captions(dataset, num_workers=2) for c in b])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(f"pair {i}" for i in range(48))


def test_too_few_shards_for_the_workers_is_an_error(tmp_path):
    pattern = unique_shards(tmp_path, n=12, shard_size=6)  # 2 shards
    dataset = ShardDataset(pattern, TRANSFORM, batch_size=2, world_size=2, rank=0)
    with pytest.raises(ValueError, match=r"2 shard\(s\) for 2 rank\(s\) x 2 worker\(s\).*at least 4"):
        make_shard_loader(dataset, lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), num_workers=2)
    with pytest.raises(ValueError, match="epoch length is unknown"):
        (tmp_path / "sizes.json").unlink()
        ShardDataset(pattern, TRANSFORM, batch_size=2)


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    good = [(png(i), "png", f"pair {i}", i % 3) for i in range(10)]
    bad = [
        (b"not an image", "jpg", "broken bytes", 0),  # bad_image
        (png(1), "png", "   ", 1),  # empty_caption
    ]
    write_shards(good[:5] + bad + good[5:], tmp_path, shard_size=6, classes=["a", "b", "c"])
    # A sample without an image, and one with a label out of range, written by hand into a third shard.
    with tarfile.open(tmp_path / "00002.tar", "w") as tar:
        for name, data in (("x.txt", b"no image here"), ("y.png", png(3)), ("y.txt", b"label 7"), ("y.cls", b"7")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    # A truncated shard: its first samples are read, the rest is lost.
    whole = (tmp_path / "00000.tar").read_bytes()
    (tmp_path / "00003.tar").write_bytes(whole[: len(whole) // 2 + 100])
    with pytest.warns(UserWarning, match="does not list 2 shard"):  # the two written by hand
        # In order: worker 0 reads shards 0 and 2, worker 1 shards 1 and 3; a quota of 9 samples each
        # makes both read all of their shards (and then start them again).
        dataset = ShardDataset(
            str(tmp_path / "{00000..00003}.tar"), TRANSFORM, batch_size=1, epoch_samples=18, shuffle=False
        )
    # The workers warn about the truncated shard on stderr; the counts reach the main process.
    captions = [c for b in epoch_captions(dataset, num_workers=2) for c in b]
    assert len(captions) == 18 and "broken bytes" not in captions and "label 7" not in captions
    skipped = dataset.skipped  # summed over the two workers, through shared memory
    # Each read of a bad sample counts; a worker that starts its shards again counts them again.
    assert all(skipped[reason] >= 1 for reason in SHARD_SKIP_REASONS), skipped
    # One pass in one process: each bad sample is counted once.
    single = ShardDataset(
        str(tmp_path / "{00000..00001}.tar"), TRANSFORM, batch_size=1, epoch_samples=10, shuffle=False
    )
    assert len(list(single)) == 10
    assert single.skipped == {"bad_image": 1, "no_image": 0, "empty_caption": 1, "bad_label": 0, "bad_shard": 0}


@pytest.mark.parametrize("num_workers, start", [(0, 5), (2, 5), (2, 6)])
def test_start_at_continues_the_epoch_exactly(tmp_path, num_workers, start):
    pattern = unique_shards(tmp_path, n=48, shard_size=6)
    dataset = ShardDataset(pattern, TRANSFORM, batch_size=4, seed=1)
    full = epoch_captions(dataset, num_workers, epoch=2)
    dataset.start_at(start)
    rest = epoch_captions(dataset, num_workers, epoch=2)
    assert rest == full[start:]


def test_training_on_shards_resumes_exactly(tmp_path):
    pattern = unique_shards(tmp_path / "shards", n=48, shard_size=6)
    kw = dict(epochs=2, lr=1e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu", seed=0)

    def run(out: str, **extra):
        bundle = tiny(0)
        model = build_clip_factorcl(bundle, method="factorcl-ssl", conditioning="chain")
        dataset = ShardDataset(pattern, image_transform(bundle.preprocess_cfg), batch_size=8, seed=0)
        loader = make_shard_loader(dataset, bundle.tokenizer, num_workers=2)
        result = factorcl.fit(model, loader, out_dir=str(tmp_path / out), **kw, **extra)
        return model, result

    full, result = run("full")
    assert result.step == 12  # 48 samples / 8 per batch, 2 epochs
    run("part", stop_after=7)  # mid-epoch 1, at an odd batch: the workers' turn order is rotated
    resumed, result = run("part", resume="auto")
    assert result.step == 12
    expected = dict(full.named_parameters())
    for name, p in resumed.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0, msg=name)


def _two_ranks_on_shards(rank: int, world: int, pattern: str, out_dir: str) -> dict:
    """Each rank trains on its part of the shards; returns the captions it trained on."""
    seen: list[str] = []

    class Recording(ShardDataset):
        def _decode(self, sample, worker):
            item = super()._decode(sample, worker)
            if item is not None:
                seen.append(item[1])
            return item

    bundle = tiny(0)
    model = build_clip_factorcl(bundle, method="factorcl-ssl", conditioning="chain")
    dataset = Recording(pattern, image_transform(bundle.preprocess_cfg), batch_size=4, seed=0)
    loader = make_shard_loader(dataset, bundle.tokenizer, num_workers=0)
    result = factorcl.fit(
        model,
        loader,
        epochs=1,
        lr=1e-3,
        critic_steps=1,
        progress=False,
        tensorboard=False,
        device="cpu",
        out_dir=out_dir,
    )
    return {"seen": seen, "steps": result.step, "len": len(loader)}


def test_two_gloo_ranks_train_on_disjoint_shards_covering_the_epoch(tmp_path):
    pattern = unique_shards(tmp_path / "shards", n=32, shard_size=4)
    results = run_ranks(_two_ranks_on_shards, tmp_path, world=2, args=(pattern, str(tmp_path / "run")))
    assert [r["steps"] for r in results] == [4, 4] and [r["len"] for r in results] == [4, 4]
    seen = [r["seen"] for r in results]
    assert len(seen[0]) == len(seen[1]) == 16 and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(f"pair {i}" for i in range(32))


def test_shards_without_a_usable_sample_raise_instead_of_cycling_forever(tmp_path):
    # classes.json promises labels, but no sample has a .cls: every sample is rejected.
    write_shards(((png(i), "png", f"pair {i}", None) for i in range(8)), tmp_path, shard_size=4, classes=["a", "b"])
    dataset = ShardDataset(str(tmp_path / "{00000..00001}.tar"), TRANSFORM, batch_size=2)
    with pytest.raises(ValueError, match=r"hold no usable sample.*bad_label': 8.*every sample needs a \.cls label"):
        list(dataset)


def test_a_resume_across_passes_of_a_shard_epoch_is_exact(tmp_path):
    """steps_per_epoch longer than one pass over the shards: the resume skips by reading, and is exact."""
    pattern = unique_shards(tmp_path / "shards", n=24, shard_size=6)
    kw = dict(epochs=1, steps_per_epoch=10, lr=1e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu")

    def run(out: str, **extra):
        bundle = tiny(0)
        model = build_clip_factorcl(bundle, method="factorcl-ssl", conditioning="chain")
        dataset = ShardDataset(pattern, image_transform(bundle.preprocess_cfg), batch_size=4, seed=0)
        factorcl.fit(model, make_shard_loader(dataset, bundle.tokenizer), out_dir=str(tmp_path / out), **kw, **extra)
        return model

    full = run("full")
    run("part", stop_after=8)  # the second pass over the 6 batches of the shards
    resumed = run("part", resume="auto")
    expected = dict(full.named_parameters())
    for name, p in resumed.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0, msg=name)


def test_the_trainer_refuses_streams_that_cannot_follow_it(tmp_path):
    pattern = unique_shards(tmp_path, n=24, shard_size=6)
    bundle = tiny(0)
    model = build_clip_factorcl(bundle, method="simclr")
    kw = dict(epochs=1, progress=False, tensorboard=False, device="cpu")
    made_for_two = ShardDataset(pattern, TRANSFORM, batch_size=4, world_size=2, rank=0)
    with pytest.raises(ValueError, match=r"made for 2 process\(es\) but this run has 1.*init_distributed"):
        factorcl.fit(model, make_shard_loader(made_for_two, bundle.tokenizer), **kw)
    dataset = ShardDataset(pattern, TRANSFORM, batch_size=4)
    persistent = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=1, persistent_workers=True)
    with pytest.raises(ValueError, match="persistent_workers=True: its workers would never see the epoch"):
        factorcl.fit(model, persistent, **kw)
