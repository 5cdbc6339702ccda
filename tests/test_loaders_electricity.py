"""The electricity loader on tiny files in the UCI LD2011_2014.txt format (';', decimal commas)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxunlearn.data.loaders import load_electricity
from jaxunlearn.data.loaders.electricity import hourly
from jaxunlearn.data.sources import MissingDataError, build_task, load_dataset

SPLITS = ("train", "val", "test")
HOURS = 240  # ten days from Saturday 2011-01-01
CLIENTS = ("MT_001", "MT_002", "MT_003")


def _quarters(hours=HOURS, start_minute=15):
    """Quarter-hour end stamps from 2011-01-01 00:15 and three clients' loads [Q, 3]."""
    stamps = (
        np.datetime64("2011-01-01T00:00")
        + np.timedelta64(start_minute, "m")
        + np.arange(hours * 4) * np.timedelta64(15, "m")
    )
    q = np.arange(stamps.size, dtype=np.float64)
    loads = np.stack([1.25 * (q % 4), 10.0 + 0.5 * (q % 96) / 4, np.where(q % 8 < 4, 2.75, 0.0)], axis=1)
    return stamps, loads


def _text(stamps, loads, clients=CLIENTS):
    lines = [";".join(['""'] + [f'"{c}"' for c in clients])]
    for t, row in zip(stamps, loads, strict=True):
        stamp = str(t).replace("T", " ") + ":00"
        lines.append(
            ";".join([f'"{stamp}"'] + [f"{v:.4f}".replace(".", ",").rstrip("0").rstrip(",") or "0" for v in row])
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("electricity")
    stamps, loads = _quarters()
    (root / "LD2011_2014.txt").write_text(_text(stamps, loads))
    return root


def _expected_hourly(loads):
    return loads.reshape(HOURS, 4, -1).mean(axis=1)


def test_hourly_means_of_quarters_ending_in_the_hour():
    stamps, loads = _quarters(hours=3, start_minute=0)  # first reading 00:00 belongs to the previous hour
    hours, means = hourly(stamps, loads)
    assert hours.size == 2  # the partial first hour and the partial last hour are dropped
    assert str(hours[0]) == "2011-01-01T00"
    np.testing.assert_allclose(means[0], loads[1:5].mean(axis=0))


def test_windows_targets_and_chronological_splits(folder):
    raw = load_electricity(folder, window=24, horizon=6)
    series = _expected_hourly(_quarters()[1]).sum(axis=1)
    n = HOURS - 24 - 6 + 1
    sizes = [raw.splits[s][1].size for s in SPLITS]
    assert sizes == [int(0.7 * n), int(0.1 * n), n - int(0.7 * n) - int(0.1 * n)]
    offset = 0
    for s in SPLITS:
        x, y = raw.splits[s]
        assert x.shape == (y.size, 24) and x.dtype == np.float32 and y.dtype == np.float32
        starts = offset + np.arange(y.size)
        np.testing.assert_allclose(x, series[starts[:, None] + np.arange(24)], rtol=1e-6)
        np.testing.assert_allclose(y, series[starts + 29], rtol=1e-6)
        offset += y.size
    assert raw.target_units == "kW" and raw.per_feature_inputs is False


def test_decimal_commas_are_read_as_decimals(folder):
    raw = load_electricity(folder, clients="MT_001", window=24, horizon=6)
    # MT_001 cycles 0, 1.25, 2.5, 3.75 within every hour: hourly mean 1.875 kW
    np.testing.assert_allclose(raw.splits["train"][0], 1.875, rtol=1e-6)


def test_client_selection(folder):
    hourly_clients = _expected_hourly(_quarters()[1])
    one = load_electricity(folder, clients="MT_002", window=24, horizon=6)
    two = load_electricity(folder, clients="MT_002, MT_003", window=24, horizon=6)
    listed = load_electricity(folder, clients=["MT_002", "MT_003"], window=24, horizon=6)
    np.testing.assert_allclose(one.splits["train"][0][0], hourly_clients[:24, 1], rtol=1e-6)
    np.testing.assert_allclose(two.splits["train"][0][0], hourly_clients[:24, 1:].sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(two.splits["test"][1], listed.splits["test"][1])
    assert "MT_002" in one.description
    with pytest.raises(ValueError, match="MT_999"):
        load_electricity(folder, clients="MT_999")


def test_default_rule_forgets_weekend_targets(folder):
    raw = load_electricity(folder, window=24, horizon=6)
    task = build_task(raw)
    # row i's target is hour i + 29 after 2011-01-01 00:00 (a Saturday): day (i + 29) // 24
    offset = 0
    for s in SPLITS:
        n = raw.splits[s][1].size
        day = (offset + np.arange(n) + 29) // 24
        expected = (day % 7 == 0) | (day % 7 == 1)  # days 0, 1, 7, 8 are Sat/Sun
        np.testing.assert_array_equal(np.asarray(getattr(task, s).forget) > 0.5, expected)
        offset += n
    assert 0.15 < float(np.asarray(task.train.forget).mean()) < 0.5


def test_start_end_and_file_path_argument(folder):
    raw = load_electricity(folder / "LD2011_2014.txt", window=24, horizon=6, start="2011-01-02", end="2011-01-09")
    n = 7 * 24 - 24 - 6 + 1
    assert sum(raw.splits[s][1].size for s in SPLITS) == n
    full = _expected_hourly(_quarters()[1]).sum(axis=1)
    np.testing.assert_allclose(raw.splits["train"][0][0], full[24:48], rtol=1e-6)
    assert "2011-01-02T00" in raw.description
    by_path = load_electricity(path=folder / "LD2011_2014.txt", window=24, horizon=6)
    np.testing.assert_array_equal(
        by_path.splits["val"][1], load_electricity(folder, window=24, horizon=6).splits["val"][1]
    )
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        load_electricity(folder, path=folder / "LD2011_2014.txt")


def test_registry_end_to_end(folder):
    task = build_task(load_dataset("electricity", data_dir=str(folder), window=24, horizon=6), "quantile>=0.8")
    assert task.input_shape == (24,)
    assert task.describe()["train"]["forget"] > 0


def test_missing_file(tmp_path):
    with pytest.raises(MissingDataError, match=r"LD2011_2014\.txt does not exist.*decimal comma"):
        load_electricity(tmp_path)
    with pytest.raises(MissingDataError):
        load_electricity(tmp_path / "nowhere.txt")


def _corrupt(tmp_path, edit):
    stamps, loads = _quarters(hours=48)
    lines = _text(stamps, loads).splitlines()
    edit(lines)
    (tmp_path / "LD2011_2014.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls: ls.__setitem__(0, ls[0].replace(";", ",")), r"line 1: header .* is not a ';'-separated"),
        (lambda ls: ls.__setitem__(7, ls[7] + "x"), r"line 8, client MT_003: value '0x' is not a number"),
        (lambda ls: ls.__setitem__(9, ls[9].rsplit(";", 1)[0] + ";"), r"line 10, client MT_003: value is empty"),
        (
            lambda ls: ls.__setitem__(5, ls[5].split(";", 2)[0] + ";oops;" + ls[5].split(";", 2)[2]),
            r"line 6, client MT_001: value 'oops'",
        ),
        (lambda ls: ls.__setitem__(10, ls[10].replace("2011-01-01", "2011-13-01")), r"line 11: timestamp .*2011-13-01"),
        (lambda ls: ls.pop(20), r"line 21: timestamp .* is 30 minutes after"),
    ],
)
def test_malformed_file(tmp_path, edit, message):
    folder = _corrupt(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as info:
        load_electricity(folder, window=12, horizon=3)
    assert str(info.value).startswith("electricity: ") and "LD2011_2014.txt" in str(info.value)


def test_too_short_for_the_window(folder):
    with pytest.raises(ValueError, match="leaves only"):
        load_electricity(folder, window=230, horizon=6)
