"""UCI ElectricityLoadDiagrams2011-2014: 15-minute loads of 370 Portuguese clients (Trindade, 2015)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxunlearn.data import sources as _sources
from jaxunlearn.data.forget_rules import Mask
from jaxunlearn.extras import require

FILE_NAME = "LD2011_2014.txt"
LAYOUT = (
    f'expected the UCI file {FILE_NAME}: \';\'-separated, a header row \'"";"MT_001";...;"MT_370"\', then '
    "one row per 15 minutes: a timestamp 'YYYY-MM-DD hh:mm:ss' (the end of the quarter hour) and each "
    "client's load in kW with a decimal comma (e.g. '2011-01-01 00:15:00;0;14,22;...')"
)


def _resolve(data_dir: Path) -> Path:
    path = data_dir / FILE_NAME if data_dir.is_dir() else data_dir
    if not path.is_file():
        raise _sources.MissingDataError(f"electricity: {path} does not exist; {LAYOUT}")
    return path


def read_load_diagrams(path: Path, clients: str | Sequence[str] = "all"):
    """Reads the UCI file and returns the chosen clients' quarter-hour loads, checked.

    Args:
        path: the ``LD2011_2014.txt`` file (or a file of the same format).
        clients: "all", one client name ("MT_001"), a comma-separated string of names, or a
            sequence of names.

    Returns:
        (timestamps [T] datetime64[ns], loads [T, C] float64 in kW, client names [C]).

    Raises:
        ValueError: naming the file and line, for a header that is not ';'-separated, an
            unknown client, a bad timestamp, a value that is not a number, or timestamps
            not 15 minutes apart.
    """
    require("data", "reading the UCI electricity file", "pandas")
    import pandas as pd

    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split(";")
    names = [h.strip().strip('"') for h in header]
    if len(names) < 2 or not all(names[1:]):
        raise ValueError(
            f"electricity: {path}, line 1: header {header[:4]}... is not a ';'-separated list of client names; {LAYOUT}"
        )
    if isinstance(clients, str):
        wanted = names[1:] if clients == "all" else [c.strip() for c in clients.split(",") if c.strip()]
    else:
        wanted = list(clients)
    unknown = [c for c in wanted if c not in names[1:]]
    if unknown or not wanted:
        raise ValueError(
            f"electricity: {path}: client(s) {unknown or wanted} not in the header (it has {names[1:4]}...{names[-1:]})"
        )
    table = pd.read_csv(
        path,
        sep=";",
        decimal=",",
        header=0,
        names=names,
        usecols=[names[0], *wanted],
        index_col=0,
        dtype=dict.fromkeys([names[0]], str),
        skip_blank_lines=True,
    )
    times = pd.to_datetime(table.index, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    if times.isna().any():
        row = int(np.flatnonzero(times.isna())[0])
        raise ValueError(
            f"electricity: {path}, line {row + 2}: timestamp {table.index[row]!r} is not 'YYYY-MM-DD hh:mm:ss'"
        )
    loads = np.empty((len(table), len(wanted)), np.float64)
    for j, name in enumerate(wanted):
        column = table[name]
        if not pd.api.types.is_numeric_dtype(column):  # some cell did not parse as a number
            column = pd.to_numeric(column.astype(str).str.replace(",", ".", regex=False), errors="coerce")
        values = np.asarray(column, np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            cell = table[name].iloc[row]
            what = "is empty" if pd.isna(cell) else f"{str(cell)!r} is not a number"
            raise ValueError(
                f"electricity: {path}, line {row + 2}, client {name}: value {what} "
                "(loads are kW with a decimal comma, e.g. 14,22)"
            )
        loads[:, j] = values
    if len(times) < 8:
        raise ValueError(f"electricity: {path}: only {len(times)} readings; need at least two hours of quarter-hours")
    steps = np.diff(times.values).astype("timedelta64[m]").astype(np.int64)
    if np.any(steps != 15):
        row = int(np.flatnonzero(steps != 15)[0]) + 1
        raise ValueError(
            f"electricity: {path}, line {row + 2}: timestamp {table.index[row]} is {steps[row - 1]} minutes after the "
            "previous one; readings must be 15 minutes apart, in order"
        )
    return times.values, loads, wanted


def hourly(times: np.ndarray, loads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hourly mean load (kW) from quarter-hour readings stamped at the END of each quarter.

    Hour h (from hh:00 to hh+1:00) averages the readings stamped hh:15, hh:30, hh:45 and
    hh+1:00 (so the mean kW is also the energy in kWh used in that hour). Hours with fewer
    than four readings (only possible at the file's ends) are dropped.

    Args:
        times: [T] datetime64 quarter-hour end stamps, 15 minutes apart.
        loads: [T] or [T, C] kW.

    Returns:
        (hour start stamps [H] datetime64[h], hourly mean loads [H] or [H, C]).
    """
    hours = (np.asarray(times, "datetime64[m]") - np.timedelta64(15, "m")).astype("datetime64[h]")
    starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]])
    counts = np.diff(np.r_[starts, hours.size])
    sums = np.add.reduceat(loads, starts, axis=0)
    full = counts == 4
    return hours[starts][full], sums[full] / 4.0


def load_electricity(
    data_dir: str | os.PathLike | None = None,
    clients: str | Sequence[str] = "all",
    window: int = 168,
    horizon: int = 24,
    start: str | None = None,
    end: str | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    path: str | os.PathLike | None = None,
) -> _sources.RawData:
    """Hourly electricity load of Portuguese clients, 2011-2014 (UCI ElectricityLoadDiagrams).

    Reads ``LD2011_2014.txt`` (``data_dir`` is its folder or the file itself; ``path``, the
    file, is accepted instead of ``data_dir``), sums the
    chosen ``clients`` (default: all 370, the total load the data set's users see; or one
    client such as "MT_001", or several), averages each hour's four quarter-hour readings
    (kW), and makes forecasting rows as ``taylor`` does (``sources.sliding_windows``): the
    input is ``window`` hourly loads (default a week), the target the load ``horizon`` hours
    after the window ends (default a day ahead). ``start`` / ``end`` (e.g. "2012-01-01")
    keep the hours in [start, end). Splits are chronological (70/10/20): no test-period
    window is seen in training.

    Default forget rule: rows whose TARGET hour falls on a Saturday or Sunday (about 2/7 of
    every split), i.e. forget the weekend regime of the load. A label quantile such as
    Taylor's "quantile>=0.8" is a poor default here: the total load trends upward over
    2011-2014 as clients join, so the top training quantile would cover most of the test
    period and almost none of its early part. A calendar block keeps the same forget
    fraction in every split and is something a data owner can ask to be forgotten. Any
    other rule (e.g. "quantile>=0.8") can still be passed to ``build_task``.

    Returns:
        RawData with x [N, window] float32 and y [N] float32 in kW.

    Raises:
        MissingDataError: the file is not there.
        ValueError: a malformed file (naming file, line and field) or too few hours.
    """
    if (data_dir is None) == (path is None):
        raise ValueError(
            "electricity: give exactly one of data_dir (the folder of LD2011_2014.txt, or the file) and path (the file)"
        )
    given = data_dir if path is None else path
    assert given is not None  # exactly one of them (checked above)
    path = _resolve(Path(given).expanduser())
    times, loads, names = read_load_diagrams(path, clients)
    hours, per_hour = hourly(times, loads.sum(axis=1))
    keep = np.ones(hours.size, bool)
    if start is not None:
        keep &= hours >= np.datetime64(start, "h")
    if end is not None:
        keep &= hours < np.datetime64(end, "h")
    hours, per_hour = hours[keep], per_hour[keep]
    x, y = _sources.sliding_windows(per_hour, window, horizon, name="electricity")
    target_hours = hours[window + horizon - 1 :]
    weekday = (target_hours.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weekend = weekday >= 5
    parts = _sources._chronological_split(x, np.arange(y.size), fractions)
    splits = {name: (xs.astype(np.float32), y[idx].astype(np.float32)) for name, (xs, idx) in parts.items()}
    rule = Mask({name: weekend[idx] for name, (_, idx) in parts.items()})
    who = "all clients" if isinstance(clients, str) and clients == "all" else f"client(s) {', '.join(names)}"
    return _sources.RawData(
        splits=splits,
        default_rule=rule,
        description=(
            f"UCI electricity load diagrams ({who}, {hours[0]} to {hours[-1]}), hourly kW; "
            f"{window} hours in, load {horizon} hours ahead out; forget: weekend targets"
        ),
        per_feature_inputs=False,
        target_units="kW",
    )
