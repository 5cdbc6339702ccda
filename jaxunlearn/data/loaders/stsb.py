"""STS-B sentence-pair similarity (the paper's NLP task), from GLUE TSV files or tfds glue/stsb."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from jaxunlearn.data import sources as _sources
from jaxunlearn.data.loaders.text import embed_pairs

LAYOUT = (
    "expected layout: either the GLUE STS-B folder <data_dir>/train.tsv, dev.tsv (and optionally "
    "test.tsv), tab-separated with a header naming at least sentence1, sentence2 and score "
    "(GLUE: index genre filename year old_index source1 source2 sentence1 sentence2 score), or a "
    "tfds data_dir in which glue/stsb was prepared with file_format='array_record' "
    "(<data_dir>/glue/stsb/<version>/)"
)


def read_stsb_tsv(path: Path, need_score: bool = True) -> tuple[list[str], list[str], np.ndarray | None]:
    """Reads one GLUE STS-B TSV file.

    Fields are tab-separated and unquoted (quotes are part of the text). A row with more
    fields than the header (a stray tab inside a sentence) keeps the fields before
    sentence1 and after sentence2 in place and joins the surplus into sentence2.

    Args:
        path: the file.
        need_score: whether a score column is required (GLUE's test.tsv has none).

    Returns:
        (sentence1 list, sentence2 list, scores [N] float32 or None without a score column).

    Raises:
        ValueError: naming the file and line, for a header without the needed columns, a
            short row, or a score that is not a number in [0, 5].
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip().lower() for h in next(reader, [])]
        need = ["sentence1", "sentence2"] + (["score"] if need_score else [])
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"stsb: {path}, line 1: header {header} lacks column(s) {missing}; {LAYOUT}")
        i1, i2 = header.index("sentence1"), header.index("sentence2")
        i_score = header.index("score") if "score" in header else None
        first, second, scores = [], [], []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            line = reader.line_num
            if len(row) < len(header):
                raise ValueError(f"stsb: {path}, line {line}: {len(row)} field(s), the header has {len(header)}")
            extra = len(row) - len(header)
            first.append(row[i1])
            second.append("\t".join(row[i2 : i2 + 1 + extra]))
            if i_score is not None:
                field = row[i_score + extra] if i_score > i2 else row[i_score]
                try:
                    score = float(field)
                except ValueError:
                    raise ValueError(f"stsb: {path}, line {line}: score {field!r} is not a number") from None
                if not 0.0 <= score <= 5.0:
                    raise ValueError(f"stsb: {path}, line {line}: score {score} lies outside [0, 5]")
                scores.append(score)
    if not first:
        raise ValueError(f"stsb: {path}: no data rows after the header")
    return first, second, (np.asarray(scores, np.float32) if i_score is not None else None)


def _carve_val(pairs, val_fraction: float, seed: int):
    """Splits (s1, s2, y) into a seeded (rest, val) pair, each in the original order."""
    s1, s2, y = pairs
    n = len(s1)
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise ValueError(f"stsb: val_fraction {val_fraction} of {n} training pairs leaves an empty split")
    val = np.zeros(n, bool)
    val[np.random.default_rng(seed).choice(n, size=n_val, replace=False)] = True

    def pick(mask):
        return [s for s, m in zip(s1, mask, strict=True) if m], [s for s, m in zip(s2, mask, strict=True) if m], y[mask]

    return pick(~val), pick(val)


def _from_tsv(data_dir: Path, val_fraction: float, seed: int):
    missing = [name for name in ("train.tsv", "dev.tsv") if not (data_dir / name).is_file()]
    if missing:
        raise _sources.MissingDataError(f"stsb: {[str(data_dir / m) for m in missing]} not found; {LAYOUT}")
    train = read_stsb_tsv(data_dir / "train.tsv")
    dev = read_stsb_tsv(data_dir / "dev.tsv")
    test_path = data_dir / "test.tsv"
    if test_path.is_file():
        test = read_stsb_tsv(test_path, need_score=False)
        if test[2] is not None:
            return {"train": train, "val": dev, "test": test}, "train/dev/test.tsv"
    rest, val = _carve_val(train, val_fraction, seed)
    return {"train": rest, "val": val, "test": dev}, f"train.tsv less {val_fraction:.0%} for val; dev.tsv as test"


def _from_tfds(data_dir: Path, val_fraction: float, seed: int):
    import tensorflow_datasets as tfds
    import tensorflow_datasets.text  # registers the glue builders

    def read(split: str):
        try:
            ds = tfds.data_source("glue/stsb", split=split, data_dir=str(data_dir), download=False)
        except Exception as err:  # noqa: BLE001 (not prepared there, or prepared as tfrecord: needs TensorFlow)
            if tfds.builder("glue/stsb", data_dir=str(data_dir)).is_prepared():
                raise ValueError(
                    f"stsb: glue/stsb in {data_dir} is not readable without TensorFlow ({err}); "
                    "prepare it with file_format='array_record'"
                ) from None
            raise _sources.MissingDataError(f"stsb: glue/stsb is not prepared in {data_dir}; {LAYOUT}") from None
        items = [ds[i] for i in range(len(ds))]
        return (
            [it["sentence1"] for it in items],
            [it["sentence2"] for it in items],
            np.asarray([it["label"] for it in items], np.float32),
        )

    train, dev, test = read("train"), read("validation"), read("test")
    if len(test[2]) and np.all(test[2] >= 0):
        return {"train": train, "val": dev, "test": test}, "tfds glue/stsb train/validation/test"
    rest, val = _carve_val(train, val_fraction, seed)  # GLUE's test labels are hidden (-1)
    return (
        {"train": rest, "val": val, "test": dev},
        f"tfds glue/stsb train less {val_fraction:.0%} for val; validation as test",
    )


def load_stsb(
    data_dir: str | os.PathLike, source: str = "auto", max_tokens: int = 10, val_fraction: float = 0.1, seed: int = 0
) -> _sources.RawData:
    """STS-B: sentence pairs with human similarity scores 0-5 (Cer et al., 2017; GLUE).

    Reads GLUE's TSV files from ``data_dir`` (``source="tsv"``) or tfds ``glue/stsb``
    prepared as array_record in the tfds data_dir ``data_dir`` (``source="tfds"``; nothing
    is downloaded); ``"auto"`` uses the TSV files when ``train.tsv`` is there, else tfds.

    Splits: GLUE's test set has no public scores, so when the test split carries no scores
    the training set gives up a seeded ``val_fraction`` as validation and GLUE's dev set is
    the test set (about 5,175 / 575 / 1,500 pairs for GLUE STS-B). When the test split has
    scores (e.g. the STS benchmark release), train/dev/test are used as given.

    Each sentence is cleaned, tokenised and embedded with GloVe 6B 50-d, keeping
    ``max_tokens`` tokens (10 as the paper; unknown words are zero vectors, short sentences
    are zero-padded at the front); see ``jaxunlearn.data.loaders.text``.

    Default forget rule: score < 2 (the paper's STS-B rule: the dissimilar pairs).

    Args:
        data_dir: the STS-B TSV folder, or a tfds data_dir.
        source: "auto", "tsv" or "tfds".
        max_tokens: tokens kept per sentence, T.
        val_fraction: fraction of training pairs held out for validation when needed.
        seed: seeds that hold-out.

    Returns:
        RawData with x [N, 2, T, 50] float32 and y [N] float32 scores in [0, 5].

    Raises:
        MissingDataError: neither layout is found in ``data_dir``.
        ValueError: a malformed TSV (naming file and line).
    """
    if source not in ("auto", "tsv", "tfds"):
        raise ValueError(f"stsb: source must be 'auto', 'tsv' or 'tfds', got {source!r}")
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise _sources.MissingDataError(f"stsb: data folder {data_dir} does not exist; {LAYOUT}")
    if source == "auto":
        source = "tsv" if (data_dir / "train.tsv").is_file() else "tfds"
    reader = _from_tsv if source == "tsv" else _from_tfds
    parts, how = reader(data_dir, val_fraction, seed)
    splits = {name: (embed_pairs(s1, s2, max_tokens), y) for name, (s1, s2, y) in parts.items()}
    return _sources.RawData(
        splits=splits,
        default_rule="label<2",
        description=f"STS-B sentence pairs ({how}; GloVe 6B 50-d, {max_tokens} tokens); target = similarity 0-5",
        per_feature_inputs=False,
        target_units="similarity (0-5)",
    )
