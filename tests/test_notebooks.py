"""The domain notebooks: committed without outputs, and each runs end to end at its quick size.

Each notebook runs in a fresh ipykernel (the ``python3`` kernel of the interpreter running
the tests, so the project's virtual environment) with JAXUNLEARN_NOTEBOOK_QUICK=1. The
three kernels run concurrently and share the tests' persistent XLA compilation cache
through JAX's environment variables, so reruns skip most compiling.
"""

import asyncio
from pathlib import Path

import jax
import pytest

from jaxunlearn.plots import FIGURE_FILES

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# The notebooks run once, in the module-scoped ``executed`` fixture: its tests must share one
# worker (``make test``: pytest-xdist --dist loadgroup), or each worker that gets one of them
# executes all three notebooks again.
pytestmark = pytest.mark.xdist_group("notebooks")

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


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed at its quick size, the three kernels running at once.

    Compiling dominates and XLA:CPU compiles one program on one core, so concurrent kernels
    keep every core busy. Returns {name: (notebook with outputs, its working directory) or
    the exception its execution raised}.
    """
    work = {name: tmp_path_factory.mktemp(name.split(".")[0]) for name in NOTEBOOKS}
    notebooks = {name: _read(name) for name in NOTEBOOKS}
    with pytest.MonkeyPatch.context() as mp:  # kernels inherit this process's environment
        mp.setenv("JAXUNLEARN_NOTEBOOK_QUICK", "1")
        mp.setenv("JAXUNLEARN_NOTEBOOK_OUT", "figures")  # relative to each kernel's directory
        mp.setenv("TQDM_DISABLE", "1")
        cache = jax.config.jax_compilation_cache_dir  # set by conftest.py
        if cache:
            mp.setenv("JAX_COMPILATION_CACHE_DIR", cache)
            mp.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

        async def run_all():
            clients = [
                nbclient.NotebookClient(
                    notebooks[name],
                    timeout=300,
                    kernel_name="python3",
                    resources={"metadata": {"path": str(work[name])}},
                )
                for name in NOTEBOOKS
            ]
            return await asyncio.gather(*(c.async_execute() for c in clients), return_exceptions=True)

        outcomes = asyncio.run(run_all())
    return {
        name: out if isinstance(out, BaseException) else (notebooks[name], work[name])
        for name, out in zip(NOTEBOOKS, outcomes, strict=True)
    }


@pytest.mark.heavy(18)  # each; the three run together in ``executed``
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_quick(name, executed):
    outcome = executed[name]
    if isinstance(outcome, BaseException):  # CellExecutionError carries the failing cell's traceback
        raise outcome
    nb, work = outcome
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(out.output_type == "error" for out in cell.outputs), name
    table = "".join(out.get("data", {}).get("text/markdown", "") for out in _tagged(nb, "table").outputs)
    for row in ROWS:
        assert f"| {row} |" in table, (name, row, table)
    assert sorted(p.name for p in (work / "figures").iterdir()) == sorted(FIGURE_FILES)
    images = [out for out in _tagged(nb, "figures").outputs if "image/png" in out.get("data", {})]
    assert len(images) == len(FIGURE_FILES)
