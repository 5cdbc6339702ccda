"""Face images with ages (AgeDB / UTKFace style: an image folder plus a CSV of path, age, split)."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np

from jaxunlearn.data import sources as _sources
from jaxunlearn.data.loaders.images import scale_images

_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
LAYOUT = (
    "expected layout: <data_dir>/<name>.csv with a header row and columns 'path' (image file "
    "relative to data_dir), 'age' (a number, years) and optionally 'split' (train/val/test), "
    "e.g. 'path,age,split' / 'AgeDB/0_MariaCallas_35_f.jpg,35,train'; images as PNG/JPEG"
)


def default_cache_dir() -> Path:
    """Where prepared tfds caches go: $JAXUNLEARN_CACHE, else $XDG_CACHE_HOME or ~/.cache, + jaxunlearn/tfds."""
    if os.environ.get("JAXUNLEARN_CACHE"):
        return Path(os.environ["JAXUNLEARN_CACHE"]) / "tfds"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxunlearn" / "tfds"


def _find_csv(data_dir: Path, csv_name: str | None) -> Path:
    if not data_dir.is_dir():
        raise _sources.MissingDataError(f"agedb: data folder {data_dir} does not exist; {LAYOUT}")
    if csv_name is not None:
        path = data_dir / csv_name
        if not path.is_file():
            raise _sources.MissingDataError(f"agedb: CSV file {path} does not exist; {LAYOUT}")
        return path
    found = sorted(data_dir.glob("*.csv"))
    if not found:
        raise _sources.MissingDataError(f"agedb: no .csv file in {data_dir}; {LAYOUT}")
    if len(found) > 1:
        raise ValueError(
            f"agedb: {data_dir} holds several CSV files {[p.name for p in found]}; name one with csv_name="
        )
    return found[0]


def read_age_csv(csv_path: Path, seed: int = 0) -> tuple[dict[str, list[tuple[Path, float]]], bool]:
    """Reads the (path, age[, split]) CSV; without a split column makes a seeded 70/10/20 split.

    Args:
        csv_path: the CSV file; image paths in it are relative to its folder.
        seed: seeds the split when the CSV has no split column.

    Returns:
        ({"train"|"val"|"test": [(image path, age), ...] in CSV order}, whether the CSV had
        a split column).

    Raises:
        ValueError: naming the file and line, for a missing column, a non-numeric or
            negative age, an unknown split name, or an empty split.
    """
    root = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"agedb: {csv_path}: the file is empty; {LAYOUT}")
        columns = [h.strip().lower() for h in header]
        missing = [c for c in ("path", "age") if c not in columns]
        if missing:
            raise ValueError(f"agedb: {csv_path}, line 1: header {header} lacks column(s) {missing}; {LAYOUT}")
        i_path, i_age = columns.index("path"), columns.index("age")
        i_split = columns.index("split") if "split" in columns else None
        rows, split_of = [], []
        for row in reader:
            if not any(field.strip() for field in row):
                continue  # blank line
            line = reader.line_num
            if len(row) < len(columns):
                raise ValueError(f"agedb: {csv_path}, line {line}: {len(row)} field(s), the header has {len(columns)}")
            try:
                age = float(row[i_age])
            except ValueError:
                raise ValueError(f"agedb: {csv_path}, line {line}: age {row[i_age]!r} is not a number") from None
            if not np.isfinite(age) or age < 0:
                raise ValueError(f"agedb: {csv_path}, line {line}: age {row[i_age]!r} must be a finite number >= 0")
            if i_split is not None:
                split = _SPLIT_NAMES.get(row[i_split].strip().lower())
                if split is None:
                    raise ValueError(
                        f"agedb: {csv_path}, line {line}: split {row[i_split]!r} is not one of train/val/test"
                    )
                split_of.append(split)
            rows.append((root / row[i_path].strip(), age))
    if not rows:
        raise ValueError(f"agedb: {csv_path}: no data rows after the header; {LAYOUT}")
    if i_split is None:
        order = np.random.default_rng(seed).permutation(len(rows))
        cut1, cut2 = int(0.7 * len(rows)), int(0.8 * len(rows))
        split_of = [""] * len(rows)
        for name, idx in (("train", order[:cut1]), ("val", order[cut1:cut2]), ("test", order[cut2:])):
            for i in idx:
                split_of[i] = name
    out = {name: [r for r, s in zip(rows, split_of, strict=True) if s == name] for name in ("train", "val", "test")}
    empty = [name for name, r in out.items() if not r]
    if empty:
        raise ValueError(f"agedb: {csv_path}: split(s) {empty} have no rows (need train, val and test rows)")
    return out, i_split is not None


def _cache_key(csv_path: Path, rows: dict[str, list[tuple[Path, float]]], size: int, seed: int | None) -> str:
    """A digest of everything the prepared cache depends on; checks every image file exists."""
    digest = hashlib.sha256()
    digest.update(f"{csv_path.resolve()}|{size}|{seed}|".encode())
    digest.update(csv_path.read_bytes())
    absent = []
    for name, split_rows in rows.items():
        for path, _ in split_rows:
            try:
                st = path.stat()
            except FileNotFoundError:
                absent.append(path)
                continue
            digest.update(f"{name}|{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    if absent:
        raise _sources.MissingDataError(
            f"agedb: {len(absent)} image file(s) listed in {csv_path} do not exist, "
            f"e.g. {[str(p) for p in absent[:3]]}; {LAYOUT}"
        )
    return digest.hexdigest()[:20]


def load_agedb(
    data_dir: str | os.PathLike,
    csv_name: str | None = None,
    size: int = 32,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> _sources.RawData:
    """Face images labelled with age: the paper's AgeDB (or UTKFace, IMDB-Wiki in the same layout).

    ``data_dir`` holds a CSV with columns path, age and optionally split (train/val/test;
    'valid', 'validation' and 'dev' mean val) and the image files it names, relative to
    ``data_dir``. Without a split column the rows are split 70/10/20 at random (``seed``).
    Images are decoded as RGB, resized to ``size`` x ``size`` (bilinear; the paper uses
    32x32) and scaled to [-1, 1] (mean 0.5, std 0.5, as the paper). The resized images are
    cached once through a tfds builder prepared as array_record files under ``cache_dir``
    and read back with ``as_data_source()`` (no TensorFlow); a changed CSV, image file or
    size prepares a new cache.

    Default forget rule: age <= 30 (the paper's AgeDB rule).

    Args:
        data_dir: the folder with the CSV and the images.
        csv_name: the CSV's file name; None picks the only ``*.csv`` in ``data_dir``.
        size: image height and width after resizing.
        seed: seeds the 70/10/20 split when the CSV has no split column.
        cache_dir: tfds data_dir for the prepared cache; default ``default_cache_dir()``.

    Returns:
        RawData with x [N, size, size, 3] float32 in [-1, 1] and y [N] float32 ages in years.

    Raises:
        MissingDataError: the folder, the CSV or any listed image is missing.
        ValueError: a malformed CSV (naming file and line) or an undecodable image (naming it).
    """
    if size < 4:
        raise ValueError(f"agedb: size must be >= 4 pixels, got {size}")
    data_dir = Path(data_dir).expanduser()
    csv_path = _find_csv(data_dir, csv_name)
    rows, has_split = read_age_csv(csv_path, seed)
    key = _cache_key(csv_path, rows, size, None if has_split else seed)

    import tensorflow_datasets as tfds

    from jaxunlearn.data.loaders._age_builder import JaxunlearnAgeImages

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    builder = JaxunlearnAgeImages(
        rows=rows,
        size=size,
        data_dir=str(cache),
        config=tfds.core.BuilderConfig(name=f"s{size}_{key}", description=f"agedb: {csv_path}, {size}x{size}"),
    )
    if not builder.is_prepared():
        builder.download_and_prepare(file_format="array_record")
    sources = builder.as_data_source()
    splits = {}
    for name in ("train", "val", "test"):
        ds = sources[name]
        items = ds.__getitems__(list(range(len(ds))))
        images = np.stack([item["image"] for item in items])
        ages = np.asarray([item["age"] for item in items], np.float32)
        splits[name] = (scale_images(images), ages)
    return _sources.RawData(
        splits=splits,
        default_rule="label<=30",
        description=f"face images with ages from {csv_path} ({size}x{size} RGB in [-1, 1]); target = age in years",
        per_feature_inputs=False,
        target_units="years",
    )
