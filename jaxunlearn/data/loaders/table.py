"""A researcher's own table (CSV, TSV or Parquet) as a dataset: ``--dataset table``.

    jaxunlearn run --dataset table --dataset-arg path=my.csv --dataset-arg target=price \\
        --dataset-arg features=a,b,c --dataset-arg group=patient

Every row of the file is one example: the ``target`` column is its label y, the
``features`` columns its input x. Rows are split into train/val/test by a ``split`` column
of the file or by a seeded draw (``val``, ``test``, ``split_seed``) that keeps the rows of
one ``group`` together. Problems with the file (a missing column, a cell that is not a
number, a missing value, a split column with other values, too few rows) are reported
naming the column and the first bad row, before anything is trained; the arrays are then
checked again by ``sources.validate_raw``, the checks ``task_from_arrays`` applies to a
user's own arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxunlearn.data import sources as _sources
from jaxunlearn.data.forget_rules import SPLITS
from jaxunlearn.extras import require

# file name ending -> (format, default separator); compressed CSVs (.csv.gz, ...) read as CSV
FORMATS: dict[str, tuple[str, str | None]] = {
    ".csv": ("csv", ","),
    ".tsv": ("csv", "\t"),
    ".parquet": ("parquet", None),
    ".pq": ("parquet", None),
}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
DEFAULT_VAL, DEFAULT_TEST, DEFAULT_SPLIT_SEED = 0.1, 0.2, 0
DEFAULT_RULE = "quantile>=0.8"
USAGE = (
    "--dataset table --dataset-arg path=FILE.csv --dataset-arg target=COLUMN "
    "[--dataset-arg features=A,B,C] [--dataset-arg group=COLUMN] [--dataset-arg split=COLUMN]"
)


def _format(path: Path) -> tuple[str, str | None]:
    """(format, default separator) of ``path`` from its name's ending; ValueError if unsupported."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED and suffixes[-2] in (".csv", ".tsv"):
        return FORMATS[suffixes[-2]]
    if suffixes and suffixes[-1] in FORMATS:
        return FORMATS[suffixes[-1]]
    raise ValueError(
        f"table: {path}: unsupported file type {path.suffix or '(no extension)'!r}; "
        f"give a {', '.join(FORMATS)} file (CSV and TSV may be compressed: "
        f"{', '.join('.csv' + c for c in _COMPRESSED)})"
    )


def _column_name(value: Any, role: str) -> str:
    """A column name given on the command line (where "2019" parses as 2019) or in Python."""
    if isinstance(value, (tuple, list)):
        raise ValueError(f"table: {role} names one column, got {list(value)}")
    return str(value).strip()


def _feature_names(features: str | Sequence[str] | None) -> list[str] | None:
    """features=a,b,c (a tuple from --dataset-arg), a TOML list, or one string "a,b,c"."""
    if features is None:
        return None
    items = features.split(",") if isinstance(features, str) else list(features)
    names = [str(f).strip() for f in items if str(f).strip()]
    if not names:
        raise ValueError("table: features is empty; name columns (features=a,b,c) or leave it out for every one")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"table: features names {duplicated} more than once")
    return names


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"table: {name} must be a fraction of the rows strictly between 0 and 1, got {value!r}")
    return float(value)


def read_table(path: Path, sep: str | None = None):
    """Reads a CSV/TSV (header row first) or Parquet file into a pandas DataFrame.

    Args:
        path: the file; its ending picks the format (``FORMATS``).
        sep: the CSV field separator (default "," for .csv, tab for .tsv; "tab" or "\\t"
            for a tab).

    Returns:
        (DataFrame, where) with ``where(i)`` naming the file position of data row i
        ("line 7" of a CSV, whose header is line 1; "row 5" of a Parquet file, from 0).

    Raises:
        ValueError: an unsupported ending, or a file that cannot be parsed.
        MissingDataError: there is no such file.
    """
    kind, default_sep = _format(path)
    if not path.is_file():
        raise _sources.MissingDataError(
            f"table: {path} does not exist" + (" (it is a folder)" if path.is_dir() else "") + f"; usage: {USAGE}"
        )
    require("data", "dataset 'table'", "pandas")
    import pandas as pd

    where: Callable[[int], str]
    if kind == "csv":
        try:
            given = None if sep is None else "\t" if str(sep) in ("\\t", "tab") else str(sep)
            frame = pd.read_csv(path, sep=default_sep if given is None else given)
        except (ValueError, OSError) as err:  # EmptyDataError, ParserError, UnicodeDecodeError
            raise ValueError(f"table: {path} is not a readable CSV file: {err}") from err
        where = lambda i: f"line {i + 2}"  # noqa: E731 (the header is line 1)
    else:
        if sep is not None:
            raise ValueError(f"table: sep applies to CSV files, not to the Parquet file {path}")
        require("data", "reading a Parquet file (dataset 'table')", "pyarrow")
        import pyarrow

        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError, pyarrow.ArrowException) as err:
            raise ValueError(f"table: {path} is not a readable Parquet file: {err}") from err
        where = lambda i: f"row {i}"  # noqa: E731 (rows counted from 0)
    if frame.shape[0] == 0:
        raise ValueError(f"table: {path} has a header but no rows")
    return frame, where


def _numbers(frame, column: str, role: str, path: Path, where: Callable[[int], str]) -> np.ndarray:
    """Column ``column`` as float64 [N]; ValueError naming the first cell that is not a finite number."""
    import pandas as pd

    cells = frame[column]
    if pd.api.types.is_bool_dtype(cells) or pd.api.types.is_numeric_dtype(cells):
        values = cells.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # dates, categories: not numbers
            values = np.full(len(cells), np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = cells.iloc[row]
        if pd.isna(cell):
            what, fix = "is missing", "fill or drop the rows with missing values first"
        elif isinstance(cell, (int, float, np.number)):
            what, fix = f"is {cell} (not finite)", "features and the target must be finite numbers"
        else:
            what, fix = f"{str(cell)!r} is not a number", "features and the target must be numbers"
        raise ValueError(
            f"table: {path}, {where(row)}: {role} column {column!r}: value {what} "
            f"({int(bad.sum())} such row(s) in the column); {fix}"
        )
    return values


def _mostly_numbers(cells) -> bool:
    """Whether a column counts as numeric when ``features`` is not given: a numeric dtype, or
    text cells most of which parse as numbers (so a stray "12kg" is reported, not the column
    silently dropped)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(cells) or pd.api.types.is_numeric_dtype(cells):
        return True
    if not (pd.api.types.is_object_dtype(cells) or pd.api.types.is_string_dtype(cells)):
        return False  # dates, categories, ...
    given = int(cells.notna().sum())
    parsed = int(pd.to_numeric(cells, errors="coerce").notna().sum())
    return given > 0 and parsed > given / 2


def seeded_split(groups: np.ndarray, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Rows -> splits by a seeded shuffle of whole groups.

    The groups are put in a random order (``np.random.default_rng(seed)``); the first ones go
    to test until it holds at least round(test * N) rows, the next to val until it holds at
    least round(val * N), the rest to train. With one group per row the split sizes are
    exact; with larger groups, a split is at most one group over its share.

    Args:
        groups: [N] int group codes in [0, G) (``np.arange(N)``: every row on its own).
        val, test: fractions of the rows, in (0, 1), val + test < 1.
        seed: the shuffle's seed.

    Returns:
        {"train"|"val"|"test": row indices [N_split] int64, ascending (file order)}.

    Raises:
        ValueError: a split would be empty (too few rows or groups).
    """
    n = groups.shape[0]
    sizes = np.bincount(groups)  # [G]
    want = {"test": round(test * n), "val": round(val * n)}
    for name, rows in want.items():
        if rows < 1:
            raise ValueError(
                f"table: too few rows for a split: {name}={test if name == 'test' else val} of {n} rows is "
                f"{rows} rows; every split needs at least one (use more rows or a larger fraction)"
            )
    order = np.random.default_rng(seed).permutation(sizes.shape[0])  # [G]
    cum = np.cumsum(sizes[order])  # [G] rows in the first k + 1 groups
    k_test = int(np.searchsorted(cum, want["test"], side="left")) + 1
    k_val = int(np.searchsorted(cum[k_test:] - cum[k_test - 1], want["val"], side="left")) + 1
    if k_test + k_val >= sizes.shape[0]:
        raise ValueError(
            f"table: too few rows for a split: {n} rows in {sizes.shape[0]} group(s) leave no training rows "
            f"after val={val} and test={test} (whole groups go to one split)"
        )
    split_of_group = np.zeros(sizes.shape[0], np.int64)  # 0 train, 1 val, 2 test
    split_of_group[order[:k_test]] = 2
    split_of_group[order[k_test : k_test + k_val]] = 1
    split_of_row = split_of_group[groups]  # [N]
    return {name: np.flatnonzero(split_of_row == code) for code, name in enumerate(SPLITS)}


def load_table(
    path: str | os.PathLike | None = None,
    target: str | None = None,
    features: str | Sequence[str] | None = None,
    group: str | None = None,
    split: str | None = None,
    val: float | None = None,
    test: float | None = None,
    split_seed: int | None = None,
    sep: str | None = None,
    units: str = "",
) -> _sources.RawData:
    """A tabular regression task from a CSV, TSV or Parquet file: one row per example.

    Args:
        path: the file (.csv, .tsv, possibly compressed as .csv.gz; .parquet or .pq); CSV
            and TSV files start with a header row of column names.
        target: the column to predict (y).
        features: the input columns (x), as "a,b,c" or a sequence of names. Default: every
            column except ``target``, ``group`` and ``split`` whose values are numbers
            (columns of text are left out; a column of numbers with a stray text cell is
            an error naming the cell).
        group: a column of group ids (a patient, a site, a household). In a seeded split
            the rows of one group never straddle splits. Never a feature.
        split: a column holding "train", "val" or "test" for each row: the file's own
            split, used as given (``val``, ``test`` and ``split_seed`` are then refused).
            Never a feature.
        val, test: without ``split``, the fractions of rows drawn for validation and test
            (defaults 0.1 and 0.2; the rest, 0.7, is training).
        split_seed: the seed of that draw (default 0).
        sep: the CSV field separator (default "," for .csv, tab for .tsv).
        units: the target's unit, for the output.

    Returns:
        RawData with x [N_split, F] float32 and y [N_split] float64 per split, rows in file
        order; default forget rule "quantile>=0.8" (the training rows with the 20% highest
        targets, and val/test rows above the same threshold).

    Raises:
        MissingDataError: there is no such file.
        ValueError: an unsupported file type, a file that cannot be parsed, an unknown
            column (listing the file's columns), a feature or target cell that is not a
            finite number or is missing (naming the column and the first bad row), a split
            column with other values, or too few rows for a split.
    """
    if path is None:
        raise ValueError(f"table: give the file with --dataset-arg path=FILE (CSV or Parquet); usage: {USAGE}")
    file = Path(str(path)).expanduser()
    if split is not None and any(v is not None for v in (val, test, split_seed)):
        raise ValueError("table: give either split=COLUMN (the file's own split) or val/test/split_seed, not both")
    val_frac = _fraction(DEFAULT_VAL if val is None else val, "val")
    test_frac = _fraction(DEFAULT_TEST if test is None else test, "test")
    if val_frac + test_frac >= 1.0:
        raise ValueError(f"table: val + test = {val_frac + test_frac:g} leaves no training rows; it must be below 1")
    seed = DEFAULT_SPLIT_SEED if split_seed is None else split_seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"table: split_seed must be an integer, got {seed!r}")
    wanted = _feature_names(features)
    frame, where = read_table(file, sep)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    shown = columns if len(columns) <= 40 else [*columns[:40], f"... ({len(columns)} in all)"]

    def column(value: Any, role: str) -> str:
        name = _column_name(value, role)
        if name not in columns:
            raise ValueError(f"table: {file} has no column {name!r} ({role}); its columns: {shown}")
        return name

    if target is None:
        raise ValueError(
            f"table: give the column to predict with --dataset-arg target=COLUMN; {file}'s columns: {shown}"
        )
    y_name = column(target, "target")
    group_name = None if group is None else column(group, "group")
    split_name = None if split is None else column(split, "split")
    roles = [(y_name, "the target"), (group_name, "the group column"), (split_name, "the split column")]
    reserved = {name: role for name, role in roles if name is not None}
    if len(reserved) < sum(name is not None for name, _ in roles):
        raise ValueError(
            f"table: target, group and split must be different columns, got {y_name!r}, {group_name!r}, {split_name!r}"
        )
    if wanted is None:
        x_names = [c for c in columns if c not in reserved and _mostly_numbers(frame[c])]
        if not x_names:
            raise ValueError(
                f"table: {file} has no numeric column besides {sorted(reserved)}; name the features "
                f"(features=a,b,c); its columns: {shown}"
            )
    else:
        x_names = [column(c, "features") for c in wanted]
        clash = [c for c in x_names if c in reserved]
        if clash:
            raise ValueError(f"table: column {clash[0]!r} is {reserved[clash[0]]}, so it cannot also be a feature")
    y = _numbers(frame, y_name, "target", file, where)  # [N]
    x = np.stack([_numbers(frame, c, "feature", file, where) for c in x_names], axis=1).astype(np.float32)  # [N, F]
    n = y.shape[0]
    if split_name is not None:
        rows, how = _given_split(frame[split_name], split_name, file, where), f"split column {split_name!r}"
    else:
        groups = np.arange(n) if group_name is None else _group_codes(frame[group_name], group_name, file, where)
        rows = seeded_split(groups, val_frac, test_frac, seed)
        how = f"seeded split val={val_frac:g} test={test_frac:g} split_seed={seed}"
        if group_name is not None:
            how += f", whole groups of {group_name!r} ({int(groups.max()) + 1} groups)"
    raw = _sources.RawData(
        splits={name: (x[idx], y[idx]) for name, idx in rows.items()},
        default_rule=DEFAULT_RULE,
        description=(
            f"table {file.name}: {n} rows ({'/'.join(str(rows[s].size) for s in SPLITS)} train/val/test; {how}), "
            f"target {y_name!r}, {len(x_names)} feature(s)"
        ),
        target_units=units,
    )
    _sources.validate_raw(raw)  # the checks task_from_arrays applies to a user's arrays
    return raw


def _given_split(cells, column: str, path: Path, where: Callable[[int], str]) -> dict[str, np.ndarray]:
    """{"train"|"val"|"test": row indices [N_split], ascending} from a split column's values."""
    import pandas as pd

    labels = np.array(["" if pd.isna(c) else str(c).strip() for c in cells], dtype=object)  # [N]
    bad = ~np.isin(labels, list(SPLITS))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        others = sorted({str(v) for v in cells.to_numpy()[bad] if not pd.isna(v)})[:5]
        raise ValueError(
            f"table: {path}, {where(row)}: split column {column!r} holds {cells.iloc[row]!r}; its values must be "
            f"{', '.join(SPLITS)} ({int(bad.sum())} row(s) hold something else: {others or 'missing values'})"
        )
    rows = {name: np.flatnonzero(labels == name) for name in SPLITS}
    empty = [name for name, idx in rows.items() if idx.size == 0]
    if empty:
        raise ValueError(
            f"table: too few rows for a split: split column {column!r} has no {empty} rows; "
            f"each of {', '.join(SPLITS)} needs at least one"
        )
    return rows


def _group_codes(cells, column: str, path: Path, where: Callable[[int], str]) -> np.ndarray:
    """[N] int64 group codes in [0, G) from a group column; ValueError on a missing id."""
    import pandas as pd

    codes, _ = pd.factorize(cells)  # missing values get -1
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(f"table: {path}, {where(row)}: group column {column!r}: the group id is missing")
    return np.asarray(codes, np.int64)
