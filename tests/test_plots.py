"""Figures of a tiny study: the histogram's numbers against NumPy, and valid PNG files."""

import os

import numpy as np
import pytest
from helpers import TINY, tiny_task

from jaxunlearn.plots import FIGURE_FILES, forget_deviation, write_figures
from jaxunlearn.study import run_study

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("plots")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result():
    return run_study(TINY, progress=False, log=lambda _: None, task=tiny_task())


def test_forget_deviation_matches_a_hand_computation():
    y = np.array([10.0, -4.0, 0.0, 2.0, 0.01])
    forget = np.array([True, True, True, False, True])
    preds = {
        "retrain": {"train": np.array([[9.0, -4.0, 1.0, 2.0, 0.0], [11.0, -3.0, 0.0, 0.0, 0.0]])},
        "original": {"train": np.array([[10.0, -2.0, 0.5, 5.0, 1.0], [10.0, -4.0, -1.0, 0.0, 0.0]])},
    }
    floor = 0.1
    out = forget_deviation(preds, {"train": y}, {"train": forget}, floor=floor)
    assert list(out) == ["original"]
    denom = np.maximum(np.abs(y), floor * np.std(y))[forget]  # std ~4.5: labels 0 and 0.01 use 0.45
    expected = np.concatenate(
        [np.abs(preds["original"]["train"][s] - preds["retrain"]["train"][s])[forget] / denom for s in range(2)]
    )
    np.testing.assert_allclose(out["original"], expected)
    np.testing.assert_allclose(out["original"][:4], [1 / 10, 2 / 4, 0.5 / (0.1 * np.std(y)), 1 / (0.1 * np.std(y))])


def test_forget_deviation_of_the_reference_itself_is_zero(result):
    out = forget_deviation(result.predictions, result.targets, result.forget, ["retrain", "blindspot"])
    n_forget = int(result.forget["train"].sum())
    assert out["retrain"].shape == out["blindspot"].shape == (TINY.seeds * n_forget,)
    assert np.all(out["retrain"] == 0) and np.all(np.isfinite(out["blindspot"]))


def test_forget_deviation_rejects_bad_input():
    y, preds = np.ones(3), {"retrain": {"train": np.zeros((1, 3))}}
    with pytest.raises(ValueError, match="forget set is empty"):
        forget_deviation(preds, {"train": y}, {"train": np.zeros(3, bool)})
    with pytest.raises(ValueError, match="floor"):
        forget_deviation(preds, {"train": y}, {"train": np.ones(3, bool)}, floor=0)
    with pytest.raises(ValueError, match="'nope'"):
        forget_deviation(preds, {"train": y}, {"train": np.ones(3, bool)}, ["nope"])


def test_write_figures_writes_valid_pngs_atomically(result, tmp_path):
    out = tmp_path / "figs"
    paths = write_figures(result, out)
    assert [p.name for p in paths] == list(FIGURE_FILES)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(os.listdir(out)) == sorted(FIGURE_FILES)  # no temporary files left behind
    again = write_figures(result, out)  # overwrites in place
    assert again == paths and sorted(os.listdir(out)) == sorted(FIGURE_FILES)


def test_write_figures_needs_predictions(result, tmp_path):
    import dataclasses

    with pytest.raises(ValueError, match="no predictions"):
        write_figures(dataclasses.replace(result, predictions={}), tmp_path)
