"""Evaluate's tables, notes and docs/EVALUATION.md say the same thing: every column is defined
(from the one column list each table is built from), the settings a protocol lists are the
ones it reads, and too few models for the NeurIPS'23 points draw a warning. No training:
everything here is pure functions on small arrays (tests/test_evaluate.py checks a trained
evaluation's output).

After changing a column: ``JAXUNLEARN_WRITE_DOCS=1 python -m pytest tests/test_evaluation_docs.py``.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxunlearn.evaluation import EvaluationConfig, run_evaluation
from jaxunlearn.evaluation.protocol import PROTOCOL_COLUMNS, PROTOCOLS, SHARED_SETTINGS, settings_of
from jaxunlearn.evaluation.report import TIMING_COLUMNS, column_reference, timing_table
from jaxunlearn.evaluation.table import markdown_table
from jaxunlearn.metrics.epsilon import (
    EPS_CAP,
    MIN_POINT_CUTOFF,
    epsilon_points,
    few_models_warning,
    largest_finite_eps,
    min_scoring_models,
    per_example_epsilons,
    point_cutoff,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "EVALUATION.md"
BEGIN = re.compile(r"<!-- BEGIN GENERATED: column reference[^>]*-->\n")
END = "<!-- END GENERATED: column reference -->"


def _all_columns():
    """Every (table, Column) an evaluation's output can show, from the code's lists."""
    assert PROTOCOLS, "no protocol registered"
    out = [(f"{name} table", c) for name in PROTOCOLS for c in PROTOCOL_COLUMNS[name]]
    return out + [("time per block", c) for c in TIMING_COLUMNS]


def _header_cells(table: str) -> list[str]:
    return [h.strip() for h in table.splitlines()[0].strip("|").split("|")]


def test_every_column_the_tables_show_is_defined_in_the_docs():
    """docs/EVALUATION.md has a non-empty definition row "| `HEADER` | ... |" for every
    header of every table's column list (read from the docs, not from the generator)."""
    text = DOC.read_text()
    defined = {m[1]: m[2].strip() for m in re.finditer(r"^\| `([^`]+)` \| (.*) \|$", text, re.M)}
    for table, column in _all_columns():
        assert column.definition.strip(), f"{table}: column {column.header!r} has no definition in the code"
        assert defined.get(column.header), f"docs/EVALUATION.md defines no {table} column {column.header!r}"


def test_column_reference_is_current():
    text = DOC.read_text()
    begin = BEGIN.search(text)
    assert begin and END in text, "docs/EVALUATION.md lost its generated column reference markers"
    start, stop = begin.end(), text.index(END)
    if os.environ.get("JAXUNLEARN_WRITE_DOCS") == "1":
        text = text[:start] + column_reference() + text[stop:]
        DOC.write_text(text)
        stop = text.index(END)
    assert text[start:stop] == column_reference(), (
        "docs/EVALUATION.md's column reference is out of date: run with JAXUNLEARN_WRITE_DOCS=1"
    )


def test_the_tables_are_built_from_their_column_lists():
    """The headers a protocol's table and the time table print are their lists' headers, in order."""
    for name in PROTOCOLS:
        row, *columns = PROTOCOL_COLUMNS[name]
        assert row.key == "row"
        table = markdown_table(["a"], {"a": {c.key: 1.0 for c in columns}}, columns, row.header)
        assert _header_cells(table) == [c.header for c in PROTOCOL_COLUMNS[name]]
        assert "n/a" not in table.splitlines()[2], "a column's key is not the metric it shows"
    timings = {"retrain": {"wall": 2.0, "compile": 1.0, "run": 1.0, "models": 4, "loaded": False}}
    table = timing_table(timings)
    assert _header_cells(table) == [c.header for c in TIMING_COLUMNS]
    assert _header_cells("\n".join(table.splitlines()[2:])) == ["retrain", "4", "2.0", "1.0", "4.00", "no"]


def _settings_read(function) -> set[str]:
    """The attributes read from the EvaluationConfig parameter (named ``ecfg``) of a function,
    or of every function in a module."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ecfg"
    }


def test_each_protocol_lists_exactly_the_settings_it_reads():
    """A protocol's listed settings (results.json's ``evaluation``, results.md, the docs) are
    the shared ones ``run_evaluation`` reads plus what its own module reads: neurips23
    lists no ``groups``, ulira no ``attack_models``."""
    assert _settings_read(run_evaluation) == set(SHARED_SETTINGS)
    for name, run in PROTOCOLS.items():
        # the protocol's module: its function and the helpers it hands ``ecfg`` to
        assert set(settings_of(name)) == set(SHARED_SETTINGS) | _settings_read(inspect.getmodule(run)), name
        listed = EvaluationConfig(name, models=8, groups=4).to_dict()
        assert set(listed) == set(settings_of(name)), name
    assert "groups" not in EvaluationConfig("neurips23").to_dict()
    assert "attack_models" not in EvaluationConfig("ulira").to_dict()


def test_the_command_refuses_a_setting_its_protocol_does_not_read(capsys):
    from jaxunlearn.cli import main

    assert main(["evaluate", "--protocol", "neurips23", "--groups", "8"]) == 2
    assert "--groups does not apply to --protocol neurips23" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "ulira", "--attack-models", "4"]) == 2
    assert "--attack-models does not apply to --protocol ulira" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "ulira", "--grid-unit", "target"]) == 2
    assert "--grid-unit does not apply to --protocol ulira" in capsys.readouterr().err


def test_few_models_warn_exactly_when_the_cutoff_is_below_the_minimum():
    first = min_scoring_models()
    assert point_cutoff(first) >= MIN_POINT_CUTOFF > point_cutoff(first - 1)
    for n in range(2, 1025):
        assert (few_models_warning(n) is not None) == (n < first), n
    message = few_models_warning(16)
    assert message is not None
    assert "16 models" in message and f"= {point_cutoff(16):g}," in message and f"at least {first} models" in message


def test_no_finite_eps_reaches_the_cutoff_so_eps_at_cap_is_exactly_no_points():
    """The largest eps an attack that errs can give is below the cut-off (for N >= 3) and is
    reached; so the examples that earn no point are exactly those at the cap ('eps at cap')."""
    for n in range(3, 4097):
        assert largest_finite_eps(n) < point_cutoff(n), n
    n = 16
    far = np.r_[np.arange(15.0), 100.0]  # one model of each sample inside the other's range
    near = np.r_[-100.0, np.arange(16.0, 31.0)]
    separated = np.arange(16.0) + 200.0
    u = np.stack([far, far, np.arange(16.0) / 10], axis=1)
    r = np.stack([near, separated, np.arange(16.0)[::-1] / 10 + 0.05], axis=1)
    eps = per_example_epsilons(u, r)
    assert eps[0] == pytest.approx(largest_finite_eps(n)) and eps[1] == EPS_CAP
    points = epsilon_points(eps, n)
    assert points[0] > 0 and points[1] == 0 and points[2] > 0
    rng = np.random.default_rng(0)
    for n in (8, 16, 56):
        shift = rng.choice([0.0, 1.0, 3.0, 30.0], size=60)
        eps = per_example_epsilons(rng.standard_normal((n, 60)), rng.standard_normal((n, 60)) + shift)
        at_cap = eps >= EPS_CAP
        assert 0 < at_cap.sum() < eps.size, n
        np.testing.assert_array_equal(epsilon_points(eps, n) == 0, at_cap)


def test_below_the_minimum_the_points_cannot_separate_distance_from_noise():
    """The rule's reason, measured: at the minimum N, an example as far from retraining as N
    models can show short of a perfect separation earns at most 1/32 of the points two
    retrained sets' noise earns (median eps over examples); one model fewer, more than that."""
    rng = np.random.default_rng(1)

    def ratio(n: int) -> float:
        noise = np.median(per_example_epsilons(rng.standard_normal((n, 100)), rng.standard_normal((n, 100))))
        return float(epsilon_points(largest_finite_eps(n), n) / epsilon_points(noise, n))

    first = min_scoring_models()
    assert ratio(first) <= 1 / 32 < ratio(first - 1)
    assert ratio(16) > 1 / 32
