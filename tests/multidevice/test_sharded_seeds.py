"""Seeds split across devices (``LoopPlan.devices``), on four CPU devices.

Collected only in a process started with four host devices (see ../test_multidevice.py,
which runs this folder with XLA_FLAGS=--xla_force_host_platform_device_count=4).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.cli import main
from jaxunlearn.seeds import SEED_AXIS, LoopPlan, SeedExecutor
from jaxunlearn.study import run_study
from tests.helpers import TINY, with_

DEVICES = 4
COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")


def test_the_process_has_four_devices():
    assert jax.device_count() == DEVICES, "XLA_FLAGS did not take effect: the tests below would prove nothing"


def sgd_per_seed(key, lr, x, y):
    """Ten SGD steps of a linear regression from a random start: [D] weights, loss history."""
    w0 = jax.random.normal(key, (x.shape[1],))

    def step(w, _):
        loss, grad = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
        return w - lr * grad, loss

    w, losses = jax.lax.scan(step, w0, None, length=10)
    return {"w": w, "losses": losses, "key": jax.random.split(key)[0]}


def _inputs(seeds=8):
    x = jax.random.normal(jax.random.key(1), (64, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])
    keys = jax.random.split(jax.random.key(0), seeds)
    return (keys, jnp.linspace(0.01, 0.1, seeds)), (x, y)


@pytest.mark.parametrize("strategy", ["vmap", "map", "host"])
def test_split_seeds_match_one_device_and_stay_split(strategy):
    per_seed, shared = _inputs()
    one = SeedExecutor(sgd_per_seed, LoopPlan(strategy), n_per_seed=2)(per_seed, shared)
    split = SeedExecutor(sgd_per_seed, LoopPlan(strategy, devices=DEVICES), n_per_seed=2)(per_seed, shared)
    if strategy == "host":  # the very same single-seed program on every device: bitwise
        np.testing.assert_array_equal(split["w"], one["w"])
        np.testing.assert_array_equal(split["losses"], one["losses"])
    np.testing.assert_allclose(split["w"], one["w"], rtol=1e-6)
    np.testing.assert_allclose(split["losses"], one["losses"], rtol=1e-6)
    np.testing.assert_array_equal(jax.random.key_data(split["key"]), jax.random.key_data(one["key"]))
    for leaf in jax.tree_util.tree_leaves(split):
        assert leaf.sharding.spec[0] == SEED_AXIS, leaf.sharding  # seed axis split, device d: seeds 2d, 2d+1
        assert len(leaf.sharding.device_set) == DEVICES
        assert {s.data.shape[0] for s in leaf.addressable_shards} == {2}


@pytest.mark.parametrize("strategy", ["vmap", "map", "host"])
def test_split_programs_run_no_collective(strategy):
    per_seed, shared = _inputs()
    run = SeedExecutor(sgd_per_seed, LoopPlan(strategy, devices=DEVICES), n_per_seed=2)
    hlo = run.lower(per_seed, shared).compile().as_text()
    assert not [op for op in COLLECTIVES if op in hlo]


def test_uneven_seed_counts_are_refused():
    per_seed, shared = _inputs(seeds=6)
    with pytest.raises(ValueError, match="6 seeds cannot be split evenly across 4 devices"):
        SeedExecutor(sgd_per_seed, LoopPlan("map", devices=DEVICES), n_per_seed=2)(per_seed, shared)


def test_a_study_on_four_devices_matches_one_device_and_resumes_across_device_counts(tmp_path):
    # with a sweep: blindspot's two values run as 8 seed slots over the 4 devices, then split
    # into rows; and SSD, whose phases are one-shot passes rather than epochs
    cfg = with_(TINY, seeds=4, unlearners=("blindspot", "ssd"), sweep={"blindspot.beta": (0.0, 10.0)})
    split = run_study(cfg, progress=False, log=lambda m: None, checkpoint_dir=tmp_path)
    assert split.plan.devices == DEVICES  # default: the most devices that split 4 seeds evenly
    assert split.rows == ["original", "retrain", "blindspot[beta=0]", "blindspot[beta=10]", "ssd"]
    again = run_study(cfg, progress=False, log=lambda m: None)
    one = run_study(with_(cfg, devices=1), progress=False, log=lambda m: None, checkpoint_dir=tmp_path)
    assert one.plan.devices == 1
    assert one.timings["original"]["loaded"] and one.timings["retrain"]["loaded"]  # checkpoints carry over
    for stage, metrics in split.per_seed.items():
        for name, values in metrics.items():
            if name in ("run_seconds", "time_vs_retrain"):
                continue
            np.testing.assert_array_equal(again.per_seed[stage][name], values, err_msg=f"{stage} {name}")
            np.testing.assert_allclose(
                one.per_seed[stage][name], values, rtol=1e-3, atol=1e-4, err_msg=f"{stage} {name}"
            )


def test_cli_refuses_a_device_count_that_does_not_divide_the_seeds(capsys):
    code = main(["run", "--dataset", "synthetic", "--seeds", "4", "--devices", "3", "--no-progress"])
    assert code == 2
    assert "4 seeds cannot be split evenly across 3 devices" in capsys.readouterr().err


def test_a_host_driven_study_on_two_devices_is_bitwise_one_device():
    # two devices, not four, and one single-phase unlearner: XLA:CPU compiles a host-driven
    # program once per device
    cfg = with_(TINY, seeds=2, seed_strategy="host", unlearners=("finetune",))
    split = run_study(cfg, progress=False, log=lambda m: None)
    one = run_study(with_(cfg, devices=1), progress=False, log=lambda m: None)
    assert (split.plan.devices, one.plan.devices) == (2, 1)
    for stage, metrics in split.per_seed.items():
        for name, values in metrics.items():
            if name not in ("run_seconds", "time_vs_retrain"):
                np.testing.assert_array_equal(one.per_seed[stage][name], values, err_msg=f"{stage} {name}")
