"""The three levels of reproduction (jaxunlearn/agreement.py), the machine record
(jaxunlearn/machine.py) and the numerics modes (jaxunlearn/numerics.py): host-side logic,
no compiled programs."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from jaxunlearn import agreement, machine, numerics


def _study(per_seed, digests=None):
    out = {"per_seed": per_seed}
    if digests is not None:
        out["prediction_digests"] = digests
    return out


def _rows(rng, shift=0.0, seeds=8, noise=0.0):
    base = {"original": 1.0, "retrain": 2.0, "blindspot": 1.5, "finetune": 1.8}
    out = {}
    for row, level in base.items():
        out[row] = {
            metric: (level + k + shift + rng.normal(0, 0.1, seeds) + rng.normal(0, noise, seeds)).tolist()
            for k, metric in enumerate(
                ("train_forget_mae", "test_forget_mae", "test_retain_mae", "wasserstein", "mia", "ain")
            )
        }
        out[row]["run_seconds"] = [float(rng.uniform(1, 9))] * seeds
    return out


def test_bitwise_ignores_wall_times_and_needs_every_value():
    per_seed = {"a": {"mae": [1.0, 2.0, None], "run_seconds": [3.0] * 3}, "b": {"mae": [math.nan]}}
    same = {"a": {"mae": [1.0, 2.0, None], "run_seconds": [9.0] * 3}, "b": {"mae": [math.nan]}}
    assert agreement.strongest_level(_study(per_seed), _study(same)).level == "bitwise"
    drift = {"a": {"mae": [1.0, 2.0000000000000004, None]}, "b": {"mae": [math.nan]}}
    result = agreement.strongest_level(_study(per_seed), _study(drift), statistical=False)
    assert result.level is None and "2 of 3" not in result.detail[0] and "3 of 4" in result.detail[0]


def test_rounding_needs_identical_predictions_and_metrics_to_rtol():
    per_seed = {"a": {"w1": [1.0, 2.0]}}
    close = {"a": {"w1": [1.0 + 1e-13, 2.0]}}
    digests = {"a": ["d0", "d1"]}
    level = agreement.strongest_level(_study(per_seed, digests), _study(close, digests), seeds=2)
    assert level.level == "rounding"
    other = agreement.strongest_level(_study(per_seed, digests), _study(close, {"a": ["d0", "XX"]}), seeds=2)
    assert other.level is None and "a[seed 1]: predictions differ" in other.detail[1]
    far = {"a": {"w1": [1.0 + 1e-6, 2.0]}}
    assert agreement.strongest_level(_study(per_seed, digests), _study(far, digests), seeds=2).level is None
    # a committed study without digests cannot show the rounding level
    assert agreement.rounding_differences(_study(per_seed), _study(close, digests)) is None
    # the first seeds only
    assert agreement.rounding_differences(_study(per_seed, digests), _study(close, {"a": ["d0", "XX"]}), 1) == []


def test_statistical_level_accepts_noise_and_rejects_a_shift():
    rng = np.random.default_rng(0)
    committed = _rows(rng)
    noisy = _rows(np.random.default_rng(1))  # other seeds' noise, the same means
    ok = agreement.strongest_level(_study(committed), _study(noisy))
    assert ok.level == "statistical" and ok.statistical is not None and ok.statistical.worst is not None
    assert "worst:" in ok.detail[-1]
    shifted = _rows(np.random.default_rng(1), shift=0.5)
    shifted["original"] = noisy["original"]
    bad = agreement.strongest_level(_study(committed), _study(shifted))
    assert bad.level is None and "FAILS" in bad.detail[-1]
    assert {t.row for t in bad.statistical.rejected} <= {"retrain", "blindspot", "finetune"}
    # never tried on a subset of seeds
    assert agreement.strongest_level(_study(committed), _study(noisy), seeds=2).level is None


def test_statistical_level_checks_the_claims_verdicts():
    # blindspot nearer retraining than finetune on every seed in one, farther in the other:
    # the means of each row barely move, but the claims' verdicts flip
    seeds = 8

    def study(blind, fine):
        rows = {
            "original": [0.0] * seeds,
            "retrain": [10.0] * seeds,
            "blindspot": blind,
            "finetune": fine,
            "gaussian": [5.0] * seeds,
        }
        return {
            row: {
                "train_forget_mae": list(v),
                "test_forget_mae": list(v),
                "test_retain_mae": [1.0] * seeds,
                "wasserstein": list(v),
                "mia": [0.5] * seeds,
                "ain": [0.5] * seeds,
            }
            for row, v in rows.items()
        }

    rng = np.random.default_rng(2)
    base = 8.0 + rng.normal(0, 0.05, seeds)
    committed = study(base + 0.02, base - 0.02)
    flipped = study(base - 0.02, base + 0.02)
    check = agreement.statistical_agreement(committed, flipped)
    assert not check.ok and check.claims_changed
    # without the claims (a two-seed check), the means alone agree here
    means_only = agreement.statistical_agreement(committed, flipped, claims=False)
    assert means_only.ok and not means_only.claims_changed


def test_welch_p_value_edge_cases():
    assert agreement.welch_p_value([1.0, 1.0], [1.0, 1.0])[0] == 1.0
    assert agreement.welch_p_value([1.0, 1.0], [2.0, 2.0])[0] == 0.0
    p, n_a, n_b = agreement.welch_p_value([1.0, None, math.nan], [1.0, 2.0])
    assert math.isnan(p) and (n_a, n_b) == (1, 2)
    from scipy import stats

    a, b = [1.0, 2.0, 3.5, 2.2], [2.0, 2.5, 4.0]
    assert agreement.welch_p_value(a, b)[0] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl

processor\t: 1
vendor_id\t: AuthenticAMD
"""


def test_cpu_description_reads_identity_and_isa():
    cpu = machine.cpu_description(CPUINFO)
    assert (cpu["vendor"], cpu["family"], cpu["model"], cpu["stepping"]) == ("AuthenticAMD", "25", "17", "1")
    assert cpu["isa"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl"]
    zen3 = machine.cpu_description(
        CPUINFO.replace("model\t\t: 17", "model\t\t: 1").replace(" avx512f avx512bw avx512vl", "")
    )
    diffs = machine.machine_differences({"cpu": zen3, "packages": {}}, {"cpu": cpu, "packages": {}})
    assert any(d.startswith("cpu model:") for d in diffs) and any(d.startswith("cpu isa:") for d in diffs)


def test_machine_differences_name_blas_xla_and_packages():
    here = machine.machine_description()
    assert machine.machine_differences(here, here) == []
    assert here["xla"]["cpu_threads"] >= 1 and here["packages"]["numpy"]
    other = {
        **here,
        "blas": [dict(b, kernel="Prescott") for b in here["blas"]] or [{"kernel": "Prescott"}],
        "xla": {**here["xla"], "flags": "--xla_cpu_max_isa=SSE4_2"},
        "packages": {**here["packages"], "numpy": "0.0.1", "only-there": "1.0"},
    }
    diffs = machine.machine_differences(other, here)
    assert any(d.startswith("BLAS") for d in diffs) and any(d.startswith("XLA flags") for d in diffs)
    assert any("numpy 0.0.1 ->" in d for d in diffs) and not any("only-there" in d for d in diffs)
    # an older record without the fields cannot show that the machines agree
    assert "package versions: not recorded" in machine.machine_differences({"cpu": here["cpu"]}, here)


def test_numerics_flags_and_modes(monkeypatch):
    assert numerics.flags_for("native", "--a=1") == "--a=1"
    assert numerics.flags_for("native", numerics.flags_for("portable", "--a=1")) == "--a=1"  # native strips them
    portable = numerics.flags_for("portable", "--a=1 --xla_cpu_max_isa=AVX")
    assert portable.startswith("--a=1 --xla_cpu_max_isa=AVX ")  # an explicit flag wins
    assert portable.count("xla_cpu_max_isa") == 1
    assert all(f.split("=")[0] in portable for f in numerics.PORTABLE_XLA_FLAGS)
    with pytest.raises(ValueError, match="numerics must be one of"):
        numerics.flags_for("fast")
    import jax

    jax.devices()  # the backend starts with the flags it has (an unknown flag would abort it)
    monkeypatch.setenv("XLA_FLAGS", numerics.flags_for("portable", "--b"))
    assert numerics.current() == "portable"
    monkeypatch.setenv("XLA_FLAGS", "--b")
    assert numerics.current() == "native"
    numerics.use("native")  # nothing to change: never an error
    assert os.environ["XLA_FLAGS"] == "--b"
    # the backend has started: another mode is refused, clearly, and nothing changes
    with pytest.raises(RuntimeError, match="before JAX's first computation"):
        numerics.use("portable")
    assert os.environ["XLA_FLAGS"] == "--b"
