"""docs/OUTPUTS.md (the output files and every metric key) is generated from the code and current."""

from __future__ import annotations

import os
from pathlib import Path

from jaxunlearn.metrics.suite import METRICS, TABLE_COLUMNS
from jaxunlearn.tidy import outputs_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "OUTPUTS.md"


def test_every_table_header_is_a_metric_of_the_catalogue():
    headers = dict(TABLE_COLUMNS)
    assert set(headers) == {k for k, m in METRICS.items() if m.header is not None}
    for key, header in headers.items():
        assert header.startswith(METRICS[key].header + " ["), (key, header)  # the direction follows


def test_outputs_reference_is_current():
    text = outputs_reference()
    for key in METRICS:
        assert f"| `{key}` |" in text
    if os.environ.get("JAXUNLEARN_WRITE_DOCS") == "1":
        DOC.write_text(text)
    assert DOC.exists(), "docs/OUTPUTS.md is missing: run with JAXUNLEARN_WRITE_DOCS=1"
    assert DOC.read_text() == text, "docs/OUTPUTS.md is out of date: run with JAXUNLEARN_WRITE_DOCS=1"
