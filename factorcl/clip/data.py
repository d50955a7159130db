"""Image-caption datasets from CSV/TSV, JSON Lines or JSON files, collated into FactorCL batches.

A file holds one pair per row (``.jsonl``/``.ndjson``: one JSON object per line; ``.json``: one
array of objects): ``image`` (a path, relative to the file's folder unless absolute),
``caption`` and optionally ``label`` (integers or class names). The file must be UTF-8. Rows are
checked when the dataset is made, every image header included (PIL's ``verify``, in a thread pool
for many files): a missing or unreadable image file or an empty caption raises an error naming the
file and the row, or, with ``skip_missing=True``, the row is dropped and counted by reason
(``dataset.skipped``).

Batches follow FactorCL's modality order for CLIP (documented in :mod:`factorcl.clip`):
``x1`` = caption token ids ``[B, L]`` (the modality augmented independently) and ``x2`` = images
``[B, 3, H, W]``, float in [0, 1], already resized and centre-cropped to the model's input size
(the modality that gets the unique augmentation). CLIP's mean/std normalisation is applied by the
image tower (:class:`factorcl.clip.ImageTower`), so augmentations run on [0, 1] images on device.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..data.files import read_utf8

__all__ = [
    "CaptionCollate",
    "CaptionRecord",
    "ImageCaptionDataset",
    "SKIP_REASONS",
    "check_images",
    "image_transform",
    "make_loader",
    "read_records",
    "train_test_split",
]

IMAGE_KEY, TEXT_KEY = "x2", "x1"

#: Why :func:`read_records` drops a row with ``skip_missing=True`` (the keys of ``dataset.skipped``).
SKIP_REASONS = ("missing_image", "bad_image", "empty_caption", "missing_label")
_MISSING = "file not found"
_POOL_FROM = 64  # distinct image files from which the header checks run in a thread pool


@dataclass(frozen=True)
class CaptionRecord:
    """One checked row: the resolved image path, the caption, the label (or None) and where it came from."""

    image: Path
    caption: str
    label: Any
    row: int  # 1-based data row (the header of a CSV file is not a row)
    line: int | None  # line of the file the row ends on (None in a .json array file)


def _columns(rows: list[tuple[int, int | None, dict[str, Any]]]) -> list[str]:
    """Every key of the rows' objects, in order of first appearance."""
    return list(dict.fromkeys(k for _, _, obj in rows for k in obj))


def _rows(path: Path) -> tuple[list[tuple[int, int | None, dict[str, Any]]], list[str]]:
    """(row number, line number or None, fields) of every data row, and the column names."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl", ".ndjson"):
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .tsv, .jsonl or .json")
    content = read_utf8(path)
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(content, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        columns = list(reader.fieldnames or [])
        rows = [(i, reader.line_num, row) for i, row in enumerate(reader, start=1)]
        return rows, columns
    if suffix == ".json":
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            hint = " (one object per line is JSON Lines: name the file .jsonl)" if exc.msg == "Extra data" else ""
            raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}){hint}") from None
        if not isinstance(data, list):
            raise ValueError(
                f"{path}: a .json file must hold an array of objects (one per pair), "
                f"got {type(data).__name__}; for one object per line use .jsonl"
            )
        rows = []
        for i, obj in enumerate(data, start=1):
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: element {i} of the array must be a JSON object, got {type(obj).__name__}")
            rows.append((i, None, obj))
        return rows, _columns(rows)
    rows = []
    for line_no, text in enumerate(io.StringIO(content, newline=None), start=1):  # lines as a text file reads them
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}, line {line_no}: each line must be a JSON object, got {type(obj).__name__}")
        rows.append((len(rows) + 1, line_no, obj))
    return rows, _columns(rows)


def _image_problem(path: Path) -> str | None:
    """None when ``path`` is an image file PIL can open and verify; else why not (``_MISSING`` or PIL's reason)."""
    from PIL import Image

    if not path.is_file():
        return _MISSING
    try:
        with Image.open(path) as img:
            img.verify()  # reads the header and checks the structure without decoding the pixels
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for broken files
        return f"{type(exc).__name__}: {exc}".split("\n", 1)[0]
    return None


def check_images(paths: Iterable[Path]) -> dict[Path, str | None]:
    """Each distinct path -> None when it is a readable image, else why not; a thread pool checks many files."""
    unique = list(dict.fromkeys(paths))
    if len(unique) < _POOL_FROM:
        return {p: _image_problem(p) for p in unique}
    # Mostly file reads, which release the GIL: more threads than cores.
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        return dict(zip(unique, pool.map(_image_problem, unique)))


def read_records(
    path: str | os.PathLike,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str | None = "label",
    skip_missing: bool = False,
) -> tuple[list[CaptionRecord], dict[str, int]]:
    """Check and read the rows of a CSV/TSV/JSONL/JSON image-caption file.

    Every image is checked up front (it exists, and PIL can open and verify its header). Returns
    the records and the counts of skipped rows by reason (:data:`SKIP_REASONS`: ``missing_image``,
    ``bad_image``, ``empty_caption``, ``missing_label``). Without ``skip_missing`` the first bad
    row raises FileNotFoundError (missing image) or ValueError (unreadable image, caption, label),
    naming the file and the row. Labels are used when the file has ``label_column``; every row
    then needs one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    rows, columns = _rows(path)
    for col in (image_column, caption_column):
        if col not in columns:
            raise ValueError(f"{path} has no {col!r} column; its columns are {columns}")
    use_labels = label_column is not None and label_column in columns
    base = path.parent

    def image_path(raw: Any) -> Path:
        image = Path(str(raw or "")).expanduser()
        return image if image.is_absolute() else base / image

    problems = check_images(image_path(f.get(image_column)) for _, _, f in rows if f.get(image_column))
    skipped = {reason: 0 for reason in SKIP_REASONS}
    first_bad: str | None = None  # the first unreadable image, for the warning
    records: list[CaptionRecord] = []
    for row, line, fields in rows:
        where = f"row {row} of {path}" if line is None else f"row {row} (line {line}) of {path}"
        raw_image = fields.get(image_column)
        caption = fields.get(caption_column)
        caption = "" if caption is None else str(caption).strip()
        if not caption:
            if skip_missing:
                skipped["empty_caption"] += 1
                continue
            raise ValueError(
                f"empty caption in {where}; fix the row or pass skip_missing=True (--skip-missing) to drop it"
            )
        image = image_path(raw_image)
        problem = problems[image] if raw_image else _MISSING
        if problem == _MISSING:
            if skip_missing:
                skipped["missing_image"] += 1
                continue
            raise FileNotFoundError(
                f"image file not found: {image} ({image_column}={raw_image!r} in {where}); "
                "pass skip_missing=True (--skip-missing) to drop such rows"
            )
        if problem is not None:
            if skip_missing:
                skipped["bad_image"] += 1
                first_bad = first_bad or f"{image} ({where}): {problem}"
                continue
            raise ValueError(
                f"not a readable image: {image} ({image_column}={raw_image!r} in {where}): {problem}; "
                "replace the file or pass skip_missing=True (--skip-missing) to drop such rows"
            )
        label = None
        if use_labels:
            label = fields.get(label_column)
            if label is None or (isinstance(label, str) and not label.strip()):
                if skip_missing:
                    skipped["missing_label"] += 1
                    continue
                raise ValueError(f"missing {label_column!r} in {where}; every row needs a label when the column exists")
            label = label.strip() if isinstance(label, str) else label
        records.append(CaptionRecord(image, caption, label, row, line))
    dropped = sum(skipped.values())
    if dropped:
        parts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in skipped.items() if n)
        example = f"; first unreadable image: {first_bad}" if first_bad else ""
        warnings.warn(f"{path}: skipped {dropped} of {len(rows)} rows ({parts}){example}", stacklevel=2)
    if not records:
        raise ValueError(f"{path} has no usable rows ({len(rows)} rows, {dropped} skipped)")
    return records, skipped


def _label_classes(values: Sequence[Any]) -> tuple[list[str], list[int]]:
    """Class names (sorted; numerically when every label is an integer) and each value's class index."""
    as_int: list[int] | None = []
    for v in values:
        try:
            if isinstance(v, float) and not v.is_integer():
                raise ValueError
            as_int.append(int(v))  # type: ignore[union-attr]
        except (TypeError, ValueError):
            as_int = None
            break
    if as_int is not None:
        names = [str(v) for v in sorted(set(as_int))]
        index = {str(v): i for i, v in enumerate(sorted(set(as_int)))}
        return names, [index[str(v)] for v in as_int]
    names = sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(names)}
    return names, [index[str(v)] for v in values]


def image_transform(preprocess_cfg: Mapping[str, Any]) -> Callable[[Any], Tensor]:
    """open_clip's evaluation preprocessing (resize, centre crop, RGB) *without* its normalisation.

    Gives ``[3, H, W]`` float tensors in [0, 1]; the image tower normalises (so augmentations can
    run in between on device). Same size, interpolation, resize mode and fill as the model's own
    ``preprocess``.
    """
    import open_clip

    return open_clip.image_transform(
        preprocess_cfg.get("size", 224),
        is_train=False,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize_mode=preprocess_cfg.get("resize_mode"),
        interpolation=preprocess_cfg.get("interpolation"),
        fill_color=preprocess_cfg.get("fill_color", 0),
    )


class ImageCaptionDataset(Dataset):
    """Image-caption pairs from a CSV/TSV/JSONL/JSON file; items are ``(image [3, H, W] in [0, 1], caption, label)``.

    ``preprocess_cfg`` is the model's (``ClipBundle.preprocess_cfg``); ``transform`` replaces the
    preprocessing altogether (it gets a PIL image). ``label`` is the class index, -1 without
    labels; ``classes`` names the classes (index order). See :func:`read_records` for the checks.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        preprocess_cfg: Mapping[str, Any] | None = None,
        transform: Callable[[Any], Tensor] | None = None,
        skip_missing: bool = False,
        image_column: str = "image",
        caption_column: str = "caption",
        label_column: str | None = "label",
    ) -> None:
        if transform is None and preprocess_cfg is None:
            raise ValueError("pass preprocess_cfg (the model's, e.g. bundle.preprocess_cfg) or a transform")
        self.path = Path(path)
        self.records, self.skipped = read_records(path, image_column, caption_column, label_column, skip_missing)
        self.transform = transform if transform is not None else image_transform(preprocess_cfg or {})
        if self.records[0].label is not None:
            self.classes: list[str] | None
            self.classes, self.labels = _label_classes([r.label for r in self.records])
        else:
            self.classes, self.labels = None, [-1] * len(self.records)

    @property
    def num_classes(self) -> int | None:
        """Number of label classes, or None without labels."""
        return None if self.classes is None else len(self.classes)

    @property
    def captions(self) -> list[str]:
        return [r.caption for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, str, int]:
        from PIL import Image

        rec = self.records[index]
        try:
            with Image.open(rec.image) as img:
                image = self.transform(img.convert("RGB"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image file not found: {rec.image} (row {rec.row} of {self.path}); "
                "it existed when the dataset was made"
            ) from None
        except OSError as exc:
            raise ValueError(f"cannot read image {rec.image} (row {rec.row} of {self.path}): {exc}") from exc
        return image, rec.caption, self.labels[index]


class CaptionCollate:
    """Stacks images and tokenizes captions: ``{"x1": tokens [B, L], "x2": images [B, 3, H, W], "y": labels [B]}``.

    ``y`` is left out when the dataset has no labels. Picklable, so it runs in loader workers.
    """

    def __init__(self, tokenizer: Callable[[list[str]], Tensor]) -> None:
        self.tokenizer = tokenizer

    def __call__(self, items: Sequence[tuple[Tensor, str, int]]) -> dict[str, Tensor]:
        images = torch.stack([it[0] for it in items])
        tokens = self.tokenizer([it[1] for it in items])
        batch = {TEXT_KEY: tokens.long(), IMAGE_KEY: images}
        labels = torch.tensor([int(it[2]) for it in items], dtype=torch.long)
        if bool((labels >= 0).all()):
            batch["y"] = labels
        return batch


def make_loader(
    dataset: Dataset,
    tokenizer: Callable[[list[str]], Tensor],
    batch_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    drop_last: bool | None = None,
    seed: int = 0,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader of FactorCL batches; shuffled with its own seeded generator (so resumes replay the order).

    ``drop_last`` defaults to ``shuffle`` (training: every contrastive batch has the full B).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    drop_last = shuffle if drop_last is None else drop_last
    if drop_last and len(dataset) < batch_size:  # type: ignore[arg-type]
        raise ValueError(
            f"the dataset has {len(dataset)} pairs, fewer than one batch of {batch_size}; "  # type: ignore[arg-type]
            "lower the batch size"
        )
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=CaptionCollate(tokenizer),
        drop_last=drop_last,
        generator=generator,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0,
    )


def train_test_split(
    n_or_labels: int | Sequence[int], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Seeded (train, test) index lists.

    Stratified by class when labels are given (each class in both when it has 2+ rows).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(n_or_labels, int):
        perm = torch.randperm(n_or_labels, generator=gen).tolist()
        k = max(1, round(test_fraction * n_or_labels))
        if k >= n_or_labels:
            raise ValueError(f"cannot split {n_or_labels} rows into a train and a test part")
        return sorted(perm[k:]), sorted(perm[:k])
    labels = list(n_or_labels)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    train: list[int] = []
    test: list[int] = []
    for _, idx in sorted(by_class.items()):
        perm = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        k = round(test_fraction * len(perm)) if len(perm) > 1 else 0
        k = min(max(k, 1 if len(perm) > 1 else 0), len(perm) - 1)
        test += perm[:k]
        train += perm[k:]
    if not test or not train:
        raise ValueError(f"cannot split {len(labels)} rows into a train and a test part")
    return sorted(train), sorted(test)
