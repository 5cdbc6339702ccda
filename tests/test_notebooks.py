"""The domain notebooks: committed without outputs, and each runs end to end at its quick size.

Each notebook runs in a fresh ipykernel (the ``python3`` kernel of the interpreter running
the tests, so the project's virtual environment) with JAXUNLEARN_NOTEBOOK_QUICK=1. The
kernel shares the tests' persistent XLA compilation cache through JAX's environment
variables, so reruns skip most compiling.
"""
import os
from pathlib import Path

import jax
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ["vision.ipynb", "text.ipynb", "forecasting.ipynb"]
ROWS = ("original", "retrain", "finetune", "gaussian", "blindspot")


def _read(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"
    assert _tagged(nb, "parameters").cell_type == "code"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_quick(name, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXUNLEARN_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("JAXUNLEARN_NOTEBOOK_OUT", str(tmp_path / "figures"))
    cache = jax.config.jax_compilation_cache_dir  # set by conftest.py
    if cache:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", cache)
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = _read(name)
    # Raises CellExecutionError, with the failing cell's traceback, if any cell errors.
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(out.output_type == "error" for out in cell.outputs), name
    table = "".join(out.get("data", {}).get("text/markdown", "") for out in _tagged(nb, "table").outputs)
    for row in ROWS:
        assert f"| {row} |" in table, (name, row, table)
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["errors_ci.png", "forget_deviation_hist.png"]
    images = [out for out in _tagged(nb, "figures").outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2
