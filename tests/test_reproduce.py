"""Published numbers reproduce at the code that ships: the default study (the README's
table, docs/results/default) is rerun on its first two seeds and must match the committed
per-seed metrics bitwise (seed i's keys do not depend on the seed count). ``make
reproduce`` does the same for every committed study (docs/reproduce.py)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import reproduce  # noqa: E402 (importable only once docs/ is on sys.path)


def test_per_seed_comparison_is_exact_and_skips_wall_times():
    committed = {"a": {"mae": [1.0, 2.0, None], "run_seconds": [3.0] * 3}, "b": {"mae": [math.nan]}}
    same = {"a": {"mae": [1.0, 2.0, None], "run_seconds": [9.0] * 3}, "b": {"mae": [math.nan]}}
    assert reproduce.per_seed_differences(committed, same) == (4, [])
    drift = {"a": {"mae": [1.0, 2.0000000000000004, None]}, "b": {"mae": [math.nan]}, "c": {}}
    compared, diffs = reproduce.per_seed_differences(committed, drift)
    assert compared == 4 and len(diffs) == 2
    assert "a.mae[seed 1]: 2.0 committed, 2.0000000000000004 now" in diffs
    assert reproduce.per_seed_differences(committed, drift, seeds=1) == (
        2,
        ["c: a row the committed study does not have"],
    )


def test_a_failed_comparison_names_what_differs_about_this_machine(tmp_path, monkeypatch):
    from jaxunlearn.report import environment_info

    here = environment_info()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "results.json").write_text(json.dumps({"environment": {"cpu": here["cpu"], "cpu_cores": 999}}))
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path)
    assert reproduce.machine_differences("s") == [f"cpu_cores: 999 committed, {here['cpu_cores']} here"]
    (tmp_path / "s" / "results.json").write_text(json.dumps({"environment": {"cpu": here["cpu"]}}))  # older runs
    assert reproduce.machine_differences("s") == []


def test_every_committed_study_has_its_command():
    committed = {p.parent.name for p in (ROOT / "docs" / "results").glob("*/results.json")}
    assert committed == set(reproduce.STUDIES)
    for key, command in reproduce.STUDIES.items():
        assert f"--out docs/results/{key}" in command or command.endswith(f"docs/results/{key}")


@pytest.mark.heavy(60)  # a 2-seed default study compiled at XLA's default flags
def test_the_default_study_reproduces_its_committed_metrics(monkeypatch):
    # The committed study ran with XLA's default flags, not the tests' faster-compiling ones.
    from tests.conftest import TEST_XLA_FLAGS

    monkeypatch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"].replace(TEST_XLA_FLAGS, "").strip())
    committed = json.loads((ROOT / "docs" / "results" / "default" / "results.json").read_text())
    assert committed["environment"]["git_dirty"] is False, "the committed default study ran on uncommitted code"
    assert reproduce.main(["--only", "default", "--seeds", "2"]) == 0
