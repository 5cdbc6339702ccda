"""The ``table`` dataset: a researcher's own CSV or Parquet file, from Python, the command
line and config files; its bad input is refused before anything compiles, naming the column
and row. One tiny study runs end to end (the only XLA compiles in this file)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from jaxunlearn.cli import _as_pairs, main, parse_model_args, read_config_file
from jaxunlearn.data.loaders.table import seeded_split
from jaxunlearn.data.sources import MissingDataError, build_task, load_dataset
from tests.helpers import TINY_RUN_ARGS

pytestmark = pytest.mark.xdist_group("table_dataset")

N, SITES = 300, 12


def _frame(n: int = N) -> pd.DataFrame:
    """n rows: numeric features a, b, c and row_id, a text column, a group column ``site``,
    a split column ``fold`` (70/10/20 in file order) and the target price = 3a - b + 0.5c."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "row_id": np.arange(n),
            "a": rng.standard_normal(n),
            "b": rng.standard_normal(n),
            "c": rng.integers(0, 10, n),
            "note": [f"item {i}" for i in range(n)],
            "site": rng.integers(0, SITES, n),
            "fold": np.where(np.arange(n) < 0.7 * n, "train", np.where(np.arange(n) < 0.8 * n, "val", "test")),
        }
    )
    frame["price"] = 3 * frame["a"] - frame["b"] + 0.5 * frame["c"]
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same table as {"csv": path, "parquet": path}."""
    folder = tmp_path_factory.mktemp("table")
    frame = _frame()
    frame.to_csv(folder / "data.csv", index=False)
    frame.to_parquet(folder / "data.parquet", index=False)
    return {"csv": folder / "data.csv", "parquet": folder / "data.parquet"}


def _rows(raw, split: str) -> np.ndarray:
    """The file rows of a split, from the row_id feature (column 0): [N_split] int."""
    return raw.splits[split][0][:, 0].astype(np.int64)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_seeded_split_shapes_targets_and_default_features(files, kind):
    raw = load_dataset("table", path=str(files[kind]), target="price")
    frame = _frame()
    sizes = {s: raw.splits[s][1].shape[0] for s in ("train", "val", "test")}
    assert sizes == {"train": 210, "val": 30, "test": 60}  # defaults: val=0.1, test=0.2
    for split in ("train", "val", "test"):
        x, y = raw.splits[split]
        # every numeric column but the target: row_id, a, b, c and site (no group given); never note or fold
        assert x.shape == (sizes[split], 5) and x.dtype == np.float32 and y.shape == (sizes[split],)
        rows = _rows(raw, split)
        assert np.all(np.diff(rows) > 0)  # file order within a split
        np.testing.assert_allclose(y, frame["price"].to_numpy()[rows])
        np.testing.assert_allclose(x[:, 1], frame["a"].to_numpy()[rows], rtol=1e-6)
    every = np.sort(np.concatenate([_rows(raw, s) for s in ("train", "val", "test")]))
    np.testing.assert_array_equal(every, np.arange(N))
    assert raw.default_rule == "quantile>=0.8" and "table data" in raw.description
    task = build_task(raw)  # the checks and standardisation every dataset gets
    assert task.train.y.shape == (210, 1) and task.test.x.shape == (60, 5)


def test_the_split_is_seeded_and_features_pick_columns(files):
    def load(**kwargs):
        return load_dataset("table", path=str(files["csv"]), target="price", features=("row_id", "a"), **kwargs)

    first, again, other = load(), load(split_seed=0), load(split_seed=1)
    np.testing.assert_array_equal(_rows(first, "test"), _rows(again, "test"))
    assert not np.array_equal(_rows(first, "test"), _rows(other, "test"))
    assert first.splits["train"][0].shape[1] == 2
    sized = load(val=0.2, test=0.3)
    assert [sized.splits[s][1].shape[0] for s in ("train", "val", "test")] == [150, 60, 90]


def test_rows_of_one_group_never_straddle_splits(files):
    raw = load_dataset("table", path=str(files["csv"]), target="price", group="site", test=0.25)
    site = _frame()["site"].to_numpy()
    sites = {s: set(site[_rows(raw, s)]) for s in ("train", "val", "test")}
    assert not (sites["train"] & sites["val"] or sites["train"] & sites["test"] or sites["val"] & sites["test"])
    assert set().union(*sites.values()) == set(range(SITES))
    assert raw.splits["train"][0].shape[1] == 4  # row_id, a, b, c: the group column is not a feature
    assert raw.splits["test"][1].shape[0] >= 0.25 * N  # test holds at least its share (whole groups)
    # The split itself: every group in one split, sizes at least their share, train the rest.
    groups = np.repeat(np.arange(50), 6)  # [300], 50 groups of 6 rows
    rows = seeded_split(groups, val=0.1, test=0.2, seed=3)
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(300))
    assert [len(set(groups[rows[s]])) * 6 for s in ("train", "val", "test")] == [rows[s].size for s in rows]
    assert rows["val"].size == 30 and rows["test"].size == 60


def test_the_files_split_column_is_used_as_given(files):
    csv = load_dataset("table", path=str(files["csv"]), target="price", split="fold")
    parquet = load_dataset("table", path=str(files["parquet"]), target="price", split="fold")
    np.testing.assert_array_equal(_rows(csv, "train"), np.arange(210))
    np.testing.assert_array_equal(_rows(csv, "val"), np.arange(210, 240))
    np.testing.assert_array_equal(_rows(csv, "test"), np.arange(240, 300))
    for split in ("train", "val", "test"):
        for a, b in zip(csv.splits[split], parquet.splits[split], strict=True):
            np.testing.assert_array_equal(a, b)
    assert csv.splits["train"][0].shape[1] == 5  # fold is not a feature (site is: no group given)


def test_command_line_and_config_values_reach_the_loader(files, tmp_path):
    given = parse_model_args(
        [f"path={files['csv']}", "target=price", "features=a,b,c", "val=0.2", "split_seed=4"], "--dataset-arg"
    )
    assert load_dataset("table", **dict(given)).splits["val"][0].shape == (60, 3)
    one = parse_model_args(["features=a"], "--dataset-arg")  # a single name parses as a string
    assert load_dataset("table", path=str(files["csv"]), target="price", **dict(one)).splits["val"][0].shape == (30, 1)
    config = tmp_path / "table.toml"
    config.write_text(
        f'dataset = "table"\n[dataset_kwargs]\npath = "{files["parquet"]}"\ntarget = "price"\n'
        'features = ["a", "b"]\ngroup = "site"\n'
    )
    kwargs = dict(_as_pairs(read_config_file(str(config))["dataset_kwargs"]))
    assert kwargs["features"] == ("a", "b")
    assert load_dataset("table", **kwargs).splits["train"][0].shape[1] == 2
    text = load_dataset("table", path=str(files["csv"]), target="price", features="a, b")  # a TOML string
    assert text.splits["train"][0].shape[1] == 2


def _write(tmp_path, frame: pd.DataFrame, name: str = "bad.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _with(column: str, row: int, value) -> pd.DataFrame:
    frame = _frame()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


BAD = [
    # (name, frame or None (no file written), file name, loader arguments, message fragments)
    ("missing file", None, "nope.csv", {"target": "price"}, ["nope.csv does not exist", "target=COLUMN"]),
    ("unsupported extension", _frame(), "data.xlsx", {"target": "price"}, ["unsupported file type '.xlsx'", ".csv"]),
    ("no target given", _frame(), "d.csv", {}, ["target=COLUMN", "'price'"]),
    (
        "unknown target",
        _frame(),
        "d.csv",
        {"target": "cost"},
        ["no column 'cost' (target); its columns: ['row_id', 'a', 'b'"],
    ),
    ("unknown feature", _frame(), "d.csv", {"target": "price", "features": ("a", "z")}, ["no column 'z'", "'row_id'"]),
    ("unknown group", _frame(), "d.csv", {"target": "price", "group": "city"}, ["no column 'city' (group)"]),
    (
        "text feature",
        _frame(),
        "d.csv",
        {"target": "price", "features": ("a", "note")},
        ["line 2: feature column 'note': value 'item 0' is not a number"],
    ),
    (
        "stray text in a numeric column",
        _with("b", 7, "12kg"),
        "d.csv",
        {"target": "price"},  # b is still picked as a feature (mostly numbers), and its bad cell named
        ["line 9: feature column 'b': value '12kg' is not a number (1 such row(s)"],
    ),
    (
        "non-numeric target",
        _with("price", 4, "cheap"),
        "d.csv",
        {"target": "price"},
        ["line 6: target column 'price': value 'cheap' is not a number"],
    ),
    (
        "missing value",
        _with("a", 11, np.nan),
        "d.csv",
        {"target": "price"},
        ["line 13: feature column 'a': value is missing", "fill or drop"],
    ),
    (
        "missing value (parquet)",
        _with("price", 11, None),
        "d.parquet",
        {"target": "price"},
        ["row 11: target column 'price': value is missing"],
    ),
    (
        "bad split value",
        _with("fold", 20, "holdout"),
        "d.csv",
        {"target": "price", "split": "fold"},
        ["line 22: split column 'fold' holds 'holdout'; its values must be train, val, test", "['holdout']"],
    ),
    (
        "split without val rows",
        _frame().assign(fold=lambda f: np.where(f.row_id < 250, "train", "test")),
        "d.csv",
        {"target": "price", "split": "fold"},
        ["too few rows for a split", "no ['val'] rows"],
    ),
    ("too few rows", _frame(4), "d.csv", {"target": "price"}, ["too few rows for a split: val=0.1 of 4 rows is 0"]),
    (
        "too few groups",
        _frame().assign(site=lambda f: f.row_id % 2),
        "d.csv",
        {"target": "price", "group": "site"},
        ["too few rows for a split", "2 group(s) leave no training rows"],
    ),
    (
        "split column and fractions",
        _frame(),
        "d.csv",
        {"target": "price", "split": "fold", "val": 0.2},
        ["either split=COLUMN", "not both"],
    ),
    ("target as feature", _frame(), "d.csv", {"target": "price", "features": "a,price"}, ["'price' is the target"]),
    ("fraction outside (0, 1)", _frame(), "d.csv", {"target": "price", "test": 1.5}, ["test must be a fraction"]),
    ("unknown argument", _frame(), "d.csv", {"target": "price", "colums": "a"}, ["takes no argument(s) ['colums']"]),
]


@pytest.mark.parametrize(("name", "frame", "file", "kwargs", "expect"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_what_is_wrong(tmp_path, name, frame, file, kwargs, expect):
    path = tmp_path / file if frame is None else _write(tmp_path, frame, file)
    error = MissingDataError if frame is None else ValueError
    with pytest.raises(error) as info:
        load_dataset("table", path=str(path), **kwargs)
    for fragment in expect:
        assert fragment in str(info.value), str(info.value)


def test_an_unknown_dataset_points_to_the_table_route(tmp_path, capsys):
    assert main(["run", "--dataset", "my.csv", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'my.csv'; known datasets:" in err
    assert "--dataset table --dataset-arg path=my.csv --dataset-arg target=COLUMN" in err
    assert "USAGE.md#your-own-table-from-the-command-line" in err


def test_a_study_runs_on_a_csv_from_config_and_command_line(files, tmp_path, capsys):
    config = tmp_path / "table.toml"
    config.write_text(f'dataset = "table"\n[dataset_kwargs]\npath = "{files["csv"]}"\nfeatures = ["a", "b", "c"]\n')
    out = tmp_path / "out"
    code = main(
        [
            *TINY_RUN_ARGS,  # the tiny settings; --config's dataset replaces their --dataset synthetic below
            "--dataset",
            "table",
            "--config",
            str(config),
            "--dataset-arg",
            "target=price",
            "--dataset-arg",
            "group=site",
            "--unlearners",
            "finetune",
            "--set",
            "finetune.epochs=1",
            "--batch-size",
            "64",
            "--no-checkpoints",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["dataset"] == "table"
    assert results["config"]["dataset_kwargs"]["target"] == "price"
    assert len(results["per_seed"]["retrain"]["test_forget_mae"]) == 2
    assert "table data.csv" in (out / "results.md").read_text()
