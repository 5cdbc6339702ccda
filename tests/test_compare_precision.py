"""bf16-vs-fp32 quality comparison: paired differences against the fp32 seed spread."""

import numpy as np
import pytest

from benchmarks.compare_precision import compare, to_markdown


def _study(dtype, shift=0.0, seeds=6):
    rng = np.random.default_rng(0)
    base = {m: rng.normal(1.0, 0.2, seeds) for m in ("test_retain_mae", "test_forget_mae", "wasserstein")}
    return {
        "config": {"dataset": "taylor", "seeds": seeds, "dtype": dtype, "timings": {}},
        "per_seed": {"blindspot": {m: list(v + shift) for m, v in base.items()}},
    }


def test_small_shift_is_within_noise_and_large_is_not():
    close = compare(_study("float32"), _study("bfloat16", shift=0.01))
    assert close and all(r["within_noise"] for r in close)
    assert all(r["diff"] == pytest.approx(0.01) for r in close)
    far = compare(_study("float32"), _study("bfloat16", shift=1.0))
    assert not any(r["within_noise"] for r in far)
    assert "0 of 3 metrics within" in to_markdown(far)


def test_refuses_studies_that_differ_beyond_dtype():
    other = _study("bfloat16")
    other["config"]["seeds"] = 7
    with pytest.raises(ValueError, match=r"more than the dtype: \['seeds'\]"):
        compare(_study("float32"), other)
    with pytest.raises(ValueError, match="expected a float32 and a bfloat16 study"):
        compare(_study("float32"), _study("float32"))
