"""docs/CONFIG.md lists every StudyConfig field and what it means, generated from the code."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from pathlib import Path

from jaxunlearn.config import StudyConfig, config_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def test_every_field_is_described_in_the_docstring():
    attributes = (inspect.getdoc(StudyConfig) or "").partition("Attributes:")[2]
    described = set(re.findall(r"(\w+)(?=[,:])", attributes))
    missing = [f.name for f in dataclasses.fields(StudyConfig) if f.name not in described]
    assert not missing, f"StudyConfig's docstring does not describe {missing}"


def test_config_reference_is_current():
    text = config_reference()
    if os.environ.get("JAXUNLEARN_WRITE_DOCS") == "1":
        DOC.write_text(text)
    assert DOC.exists(), "docs/CONFIG.md is missing: run with JAXUNLEARN_WRITE_DOCS=1"
    assert DOC.read_text() == text, "docs/CONFIG.md is out of date: run with JAXUNLEARN_WRITE_DOCS=1"
