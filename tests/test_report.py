"""Tests for jaxunlearn.report (summaries, tables, result files)."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from jaxunlearn.report import (
    environment_info,
    format_table,
    summarise,
    write_results,
)


def test_summarise_matches_numpy_scipy():
    vals = np.array([1.0, 2.0, 4.0, 7.0])
    s = summarise({"blindspot": {"mse": vals}})["blindspot"]["mse"]
    std = np.std(vals, ddof=1)
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(3.5)
    assert s["std"] == pytest.approx(std)
    assert s["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * std / 2.0)
    assert s["values"] == [1.0, 2.0, 4.0, 7.0]
    assert all(type(s[k]) is float for k in ("mean", "std", "ci95"))


def test_summarise_ignores_nan_and_all_nan_gives_none():
    summ = summarise(
        {
            "retrain": {
                "mse": np.array([1.0, np.nan, 3.0]),
                "mia": np.array([np.nan, np.nan, np.nan]),
            }
        }
    )["retrain"]
    mse = summ["mse"]
    assert mse["n"] == 2 and mse["mean"] == pytest.approx(2.0)
    assert mse["std"] == pytest.approx(math.sqrt(2.0))
    assert mse["ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(2.0) / math.sqrt(2))
    assert math.isnan(mse["values"][1]) and len(mse["values"]) == 3
    mia = summ["mia"]
    assert mia["n"] == 0
    assert mia["mean"] is None and mia["std"] is None and mia["ci95"] is None


def test_summarise_single_seed():
    s = summarise({"orig": {"mse": np.array([0.25]), "scalar": 1.5}})["orig"]
    assert s["mse"] == {"mean": 0.25, "std": 0.0, "ci95": 0.0, "n": 1, "values": [0.25]}
    assert s["scalar"]["mean"] == 1.5 and s["scalar"]["n"] == 1
    # A single finite value among NaNs also has zero spread.
    one = summarise({"r": {"m": [np.nan, 2.0]}})["r"]["m"]
    assert (one["mean"], one["std"], one["ci95"], one["n"]) == (2.0, 0.0, 0.0, 1)


def test_summarise_rejects_2d():
    with pytest.raises(ValueError, match="shape"):
        summarise({"r": {"m": np.zeros((2, 2))}})


def test_format_table_exact():
    summary = summarise(
        {
            "original": {"mse": [1.0, 2.0], "mia": [0.5, 0.5]},
            "blindspot": {"mse": [0.123456], "mia": [np.nan]},
        }
    )
    table = format_table(
        summary,
        rows=["original", "blindspot", "absent"],
        columns=[("mse", "Forget MSE"), ("mia", "MIA"), ("nope", "Other")],
        digits=2,
    )
    expected = (
        "| model | Forget MSE | MIA | Other |\n"
        "|---|---|---|---|\n"
        "| original | 1.50 ± 0.71 | 0.50 ± 0.00 | — |\n"
        "| blindspot | 0.12 ± 0.00 | — | — |\n"
        "| absent | — | — | — |"
    )
    assert table == expected


def _study(tmp_path):
    per_seed = {
        "original": {"mse": np.array([1.0, 2.0, 3.0]), "mia": np.array([0.9, 0.8, np.nan])},
        "retrain": {"mse": np.array([1.5, 2.5, 3.5]), "mia": np.full(3, np.nan)},
    }
    summary = summarise(per_seed)
    table = format_table(summary, ["original", "retrain"], [("mse", "MSE"), ("mia", "MIA")])
    config = {"seeds": 3, "dataset": "taylor", "lr": np.float32(1e-3), "dims": (4, 8)}
    env = {"python": "3.11", "nan_field": float("nan")}
    out = tmp_path / "nested" / "out"
    paths = write_results(out, summary=summary, per_seed=per_seed, table_md=table, config=config, environment=env)
    return out, paths, table


def test_write_results_strict_json_roundtrip(tmp_path):
    out, (json_path, md_path), table = _study(tmp_path)
    assert json_path == out / "results.json" and md_path == out / "results.md"
    text = json_path.read_text()
    assert "NaN" not in text and "Infinity" not in text

    def reject(token):
        raise AssertionError(f"non-strict JSON token {token}")

    data = json.loads(text, parse_constant=reject)
    assert set(data) == {"config", "environment", "summary", "per_seed"}
    assert data["per_seed"]["original"]["mia"] == [0.9, 0.8, None]
    assert data["per_seed"]["retrain"]["mse"] == [1.5, 2.5, 3.5]
    assert data["summary"]["retrain"]["mia"]["mean"] is None
    assert data["summary"]["original"]["mse"]["mean"] == pytest.approx(2.0)
    assert data["summary"]["original"]["mia"]["values"] == [0.9, 0.8, None]
    assert data["config"]["dims"] == [4, 8]
    assert data["config"]["lr"] == pytest.approx(1e-3)
    assert data["environment"]["nan_field"] is None
    # Round trip: re-encoding the parsed data is stable.
    assert json.loads(json.dumps(data, allow_nan=False)) == data

    md = md_path.read_text()
    assert md.startswith("# ")
    assert "- seeds: 3" in md and "- dataset: taylor" in md
    assert table in md


def test_write_results_leaves_no_temp_files_and_overwrites(tmp_path):
    out, _, _ = _study(tmp_path)
    _study(tmp_path)  # second run replaces the files in place
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]


def test_written_files_get_the_umasks_permissions_not_a_temp_files(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        _, paths, _ = _study(tmp_path)
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o644, 0o644]  # mkstemp alone gives 0o600


def test_write_results_failure_leaves_nothing(tmp_path):
    class Bad:
        def __str__(self):
            raise RuntimeError("boom")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        write_results(out, summary={}, per_seed={}, table_md="", config={"x": Bad()}, environment={})
    assert list(out.iterdir()) == []


def test_environment_info_fields():
    env = environment_info()
    for key in ("python", "platform", "versions", "jax_backend", "jax_device_kinds", "git_commit", "timestamp_utc"):
        assert key in env
    assert set(env["versions"]) == {"jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-learn"}
    assert env["versions"]["numpy"] == np.__version__
    assert env["git_commit"] is None or len(env["git_commit"]) == 40
    assert env["timestamp_utc"].endswith("+00:00")
    assert isinstance(env["cpu_cores"], int) and env["cpu_cores"] >= 1
    json.dumps(env, allow_nan=False)  # serialisable as is


def test_a_mean_over_fewer_seeds_shows_n_and_why_and_float_noise_prints_as_zero():
    from jaxunlearn.report import at_noise

    summary = summarise({"a": {"ain": [1.0, np.nan, 3.0], "gap": [0.25, -0.25, 0.0]}})
    summary["a"]["gap"]["mean"] = -3.7e-17  # what summing -0.25 + 0.25 + 0 can leave behind
    text = format_table(summary, ["a"], [("ain", "AIN"), ("gap", "gap")], why={"ain": "relearning never started"})
    assert "| a | 2.000 ± 1.414 (n=2/3) | 0.000 ± 0.250 |" in text
    assert "(n=k/S) under AIN: the mean of the k seeds with a value: relearning never started." in text
    assert "no finite value" in format_table(summary, ["a"], [("ain", "AIN")])  # no reason given: the generic one
    assert at_noise(1e-9, 0.25) == 1e-9 and at_noise(-3.7e-17, 0.25) == 0.0 and at_noise(1e-17, 0.0) == 1e-17


def test_the_row_closest_to_retraining_is_computed_with_its_ci_and_overlaps():
    from jaxunlearn.report import closest_to_retraining

    rng = np.random.default_rng(0)
    base = {k: rng.normal(1.0, 0.01, 6) for k in ("test_retain_mae", "test_forget_mae", "train_forget_mae")}
    shifted = {delta: {k: v + delta for k, v in base.items()} for delta in (0.0, 0.1, 0.101, 1.0)}
    per_seed = {"retrain": shifted[0.0], "near": shifted[0.1], "twin": shifted[0.101], "far": shifted[1.0]}
    text = closest_to_retraining({**per_seed, "original": shifted[1.0]}, y_std=1.0)
    assert text.startswith("Closest to retraining: **near**, gap 0.173 ± 0.000")  # sqrt(3) * 0.1
    assert "No other row's CI overlaps it (next: twin, 0.175 ± 0.000)" in text  # constant gaps: CIs of width 0
    assert "Doing nothing (original): 1.732" in text
    alone = closest_to_retraining({"retrain": shifted[0.0], "near": shifted[0.1], "far": shifted[1.0]}, 1.0)
    assert "No other row's CI overlaps it (next: far, 1.732 ± 0.000)" in alone
    noisy = {k: v + rng.normal(0, 0.2, 6) for k, v in shifted[0.1].items()}
    assert "Its CI overlaps" in closest_to_retraining({"retrain": shifted[0.0], "a": noisy, "b": shifted[0.1]}, 1.0)
    assert closest_to_retraining({"retrain": shifted[0.0], "original": shifted[1.0]}, 1.0) is None


def test_each_sweeps_best_row_is_named_by_its_validation_gap_with_overlaps():
    from jaxunlearn.report import best_of_sweeps

    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 0.01, 8)
    per_seed = {
        "retrain": {"val_gap": np.zeros(8)},
        "a[lr=1]": {"val_gap": 0.5 + noise},
        "a[lr=2]": {"val_gap": 0.2 + noise},
        "a[lr=3]": {"val_gap": 0.21 + rng.normal(0.0, 0.05, 8)},
        "b": {"val_gap": 0.1 + noise},  # not swept: not a sweep's row
        "c[x=1]": {"val_gap": 0.3 + noise},  # one row only: no choice to report
    }
    (text,) = best_of_sweeps(per_seed)
    assert text.startswith("Best of the 3 a rows: **a[lr=2]**, validation gap 0.20")
    assert "Its CI overlaps a[lr=3]" in text and "a[lr=1]" not in text.partition("overlaps")[2]
    per_seed["a[lr=1]"]["val_gap"] = 0.05 + noise  # now lr=1 wins, clear of the others
    (text,) = best_of_sweeps(per_seed)
    assert "**a[lr=1]**" in text and "No other row's CI overlaps it (next: a[lr=2]" in text
    assert best_of_sweeps({"retrain": {"val_gap": np.zeros(2)}, "b": {"val_gap": np.ones(2)}}) == []


def test_claims_say_why_they_are_absent():
    from jaxunlearn.claims import claims_absent, claims_report, claims_subject

    subject = claims_subject()
    row = {"test_retain_mae": np.ones(2)}
    assert "does not run" in claims_absent({"original": row, "retrain": row})
    alone = {"original": row, "retrain": row, subject: row}
    assert claims_report(alone) is None and "this study runs none" in claims_absent(alone)
    swept = {"original": row, "retrain": row, f"{subject}[lr=1]": row}
    assert f"subject='{subject}[lr=1]'" in claims_absent(swept)
