"""The README's two examples, "Your own unlearner" and "Your own model and data", run as
they are written (so they cannot rot): code blocks are read from README.md itself."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np

from jaxunlearn.cli import main
from tests.helpers import registered

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(heading: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block under the README's ``## heading``."""
    text = README.read_text()
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else None]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_own_unlearner_example_runs_through_the_cli_with_a_sweep_and_resume(tmp_path, monkeypatch, capsys):
    blocks = section_blocks("Your own unlearner")
    (code,) = [c for lang, c in blocks if lang == "python"]
    (commands,) = [c for lang, c in blocks if lang == "bash"]
    monkeypatch.chdir(tmp_path)
    Path("shrink.py").write_text(code)
    lines = [shlex.split(line) for line in commands.strip().splitlines()]
    assert len(lines) == 2 and all(argv[0] == "jaxunlearn" for argv in lines)
    with registered([]):  # the plugin's registration is undone afterwards
        assert main([*lines[0][1:], "--no-progress"]) == 0
        first = capsys.readouterr().out
        assert main([*lines[1][1:], "--no-progress"]) == 0
        second = capsys.readouterr().out
    assert "| shrink |" in first
    assert "| forget-set predictions closest to retraining (lower W1) | shrink |" in first  # in the claims
    for row in ("original", "retrain", "blindspot"):
        assert f"{row}: loaded from" in second, second
    results = json.loads((tmp_path / "shrink-study" / "results.json").read_text())
    assert {"shrink[shrink=0.2]", "shrink[shrink=0.8]", "blindspot"} <= set(results["per_seed"])
    assert results["config"]["settings"] == {"shrink": {"epochs": 3}}
    for row in ("shrink[shrink=0.2]", "shrink[shrink=0.8]"):
        assert np.all(np.isfinite(results["per_seed"][row]["wasserstein"]))
    # the weights did shrink differently: the two rows differ
    assert (
        results["per_seed"]["shrink[shrink=0.2]"]["wasserstein"]
        != results["per_seed"]["shrink[shrink=0.8]"]["wasserstein"]
    )


def test_own_model_and_data_example_runs_a_whole_study(capsys):
    (code,) = [c for lang, c in section_blocks("Your own model and data") if lang == "python"]
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # the README's own code
    result = namespace["result"]
    assert ".Regressor [code " in result.config.model  # its class and a digest of its code
    assert dict(result.config.model_kwargs) == {"features": 6, "hidden": 32}
    assert result.rows == ["original", "retrain", "finetune", "blindspot"]
    for row in result.rows:
        assert np.all(np.isfinite(result.per_seed[row]["test_forget_mae"])), row
    assert "| blindspot |" in capsys.readouterr().out
