"""Seed executor and plans: every strategy computes the same thing; plans follow measurements."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.seeds import LoopPlan, SeedExecutor, auto_plan, devices_for, tree_stack
from jaxunlearn.study import seed_keys


def per_seed_fn(key, scale, shared):
    """A per-seed computation with a loop inside, a shared argument and a pytree output."""
    noise = jax.random.normal(key, (5,))
    total = jax.lax.fori_loop(0, 3, lambda i, acc: acc + noise * scale, jnp.zeros(5))
    return {"total": total + shared, "norm": jnp.linalg.norm(noise)}


@pytest.mark.parametrize("strategy, batch", [("vmap", None), ("map", None), ("map", 2), ("host", None)])
def test_every_strategy_matches_the_single_seed_function(strategy, batch):
    keys = jax.random.split(jax.random.key(3), 5)
    scales = jnp.arange(5, dtype=jnp.float32)
    shared = jnp.ones(5)
    out = SeedExecutor(per_seed_fn, LoopPlan(strategy, map_batch_size=batch), n_per_seed=2)((keys, scales), (shared,))
    expected = tree_stack([per_seed_fn(keys[i], scales[i], shared) for i in range(5)])
    np.testing.assert_allclose(out["total"], expected["total"], rtol=1e-6)
    np.testing.assert_allclose(out["norm"], expected["norm"], rtol=1e-6)


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_compiled_programs_are_named_after_their_function(strategy):
    # Compile logs, profiles and XLA dumps name the program "<fn>_<strategy>", not "<lambda>".
    run = SeedExecutor(per_seed_fn, LoopPlan(strategy), n_per_seed=2)
    keys, scales = jax.random.split(jax.random.key(0), 2), jnp.ones(2)
    text = run.lower((keys, scales), (jnp.ones(5),)).as_text()
    assert f"per_seed_fn_{strategy}" in text


def test_executor_checks_argument_count():
    run = SeedExecutor(per_seed_fn, LoopPlan("map"), n_per_seed=2)
    with pytest.raises(ValueError, match="expected 2 per-seed arguments"):
        run((jax.random.split(jax.random.key(0), 2),), (jnp.ones(5),))


def carry_step(carry, key, scale, shared):
    """A donated carry (a dict with a PRNG key) that comes back first, and a stacked output."""
    noise = jax.random.normal(key, (5,))
    new = {"x": carry["x"] + noise * scale + shared, "key": jax.random.fold_in(carry["key"], 1)}
    return new, jnp.linalg.norm(noise)


@pytest.mark.parametrize("seeds", [3, 4, 5, 9])
def test_blocks_compute_what_one_call_computes_and_share_one_program(seeds):
    # map_block=4: calls of 5 and 9 slots run blocks of 4 (the last padded); 3 and 4 run whole
    keys = jax.random.split(jax.random.key(1), seeds)
    scales, shared = jnp.arange(seeds, dtype=jnp.float32), jnp.ones(5)

    def carry():
        return {"x": jnp.zeros((seeds, 5)), "key": jax.random.split(jax.random.key(2), seeds)}

    whole = SeedExecutor(carry_step, LoopPlan("map"), n_per_seed=3, donate=1)((carry(), keys, scales), (shared,))
    blocked_run = SeedExecutor(carry_step, LoopPlan("map", map_block=4), n_per_seed=3, donate=1)
    blocked = blocked_run((carry(), keys, scales), (shared,))
    assert blocked[0]["x"].shape == (seeds, 5) and blocked[1].shape == (seeds,)
    np.testing.assert_array_equal(blocked[0]["x"], whole[0]["x"])
    np.testing.assert_array_equal(jax.random.key_data(blocked[0]["key"]), jax.random.key_data(whole[0]["key"]))
    np.testing.assert_array_equal(blocked[1], whole[1])
    # every call of more than 4 slots runs the one program of 4 slots
    assert blocked_run._program._cache_size() == 1


def test_a_blocked_call_frees_its_donated_arguments():
    run = SeedExecutor(carry_step, LoopPlan("map", map_block=2), n_per_seed=3, donate=1)
    donated = {"x": jnp.zeros((3, 5)), "key": jax.random.split(jax.random.key(2), 3)}
    run((donated, jax.random.split(jax.random.key(1), 3), jnp.ones(3)), (jnp.ones(5),))
    assert donated["x"].is_deleted()


def test_auto_plan_follows_the_measurements():
    assert auto_plan("conv", "gpu").seed_strategy == "map"
    assert auto_plan("dense", "gpu").seed_strategy == "vmap"
    assert auto_plan("recurrent", "tpu").seed_strategy == "vmap"
    cpu_conv = auto_plan("conv", "cpu")
    assert (cpu_conv.seed_strategy, cpu_conv.epochs_per_call, cpu_conv.unroll) == ("host", 1, True)
    assert auto_plan("dense", "cpu").seed_strategy == "map"
    assert auto_plan("dense", "cpu").map_block == auto_plan("recurrent", "cpu").map_block == 4
    assert auto_plan("dense", "gpu").map_block is None  # vmap: a wider program may fuse differently


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed_strategy": "pmap"}, "seed_strategy must be one of"),
        ({"epochs_per_call": 0}, "epochs_per_call must be >= 1"),
        ({"map_batch_size": 0}, "map_batch_size must be >= 1"),
        ({"map_block": 1}, "map_block must be >= 2"),
        ({"eval_chunk": 0}, "eval_chunk must be >= 1"),
        ({"devices": 0}, "devices must be a positive integer"),
    ],
)
def test_plan_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoopPlan(**kwargs)


def test_seed_keys_do_not_depend_on_the_number_of_seeds():
    few, many = seed_keys(7, 3, "blindspot"), seed_keys(7, 10, "blindspot")
    np.testing.assert_array_equal(jax.random.key_data(few), jax.random.key_data(many[:3]))
    other_stage = seed_keys(7, 3, "finetune")
    assert not np.array_equal(jax.random.key_data(few), jax.random.key_data(other_stage))


def test_devices_for_picks_the_most_devices_that_split_the_seeds_evenly():
    assert [devices_for(s, 4) for s in (1, 2, 3, 4, 5, 6, 8, 12)] == [1, 2, 3, 4, 1, 3, 4, 4]
    assert devices_for(32, 8) == 8 and devices_for(10, 8) == 5
    assert devices_for(8) == devices_for(8, jax.device_count())  # default: every device there is


def test_a_plan_with_more_devices_than_exist_is_refused_when_it_runs():
    with pytest.raises(ValueError, match="only 1 exist"):
        SeedExecutor(per_seed_fn, LoopPlan("map", devices=2), n_per_seed=2)


# Plans spanning several devices are tested in tests/multidevice/ (run by test_multidevice.py
# in a process with four CPU devices).


def test_epochs_per_call_takes_the_largest_divisor_so_a_phase_is_one_program():
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.unlearn import make_original
    from tests.helpers import TINY, tiny_model, tiny_task, with_

    assert [LoopPlan(epochs_per_call=4).calls_of(e) for e in (1, 3, 4, 8, 10, 7)] == [1, 3, 4, 4, 2, 1]
    assert LoopPlan().calls_of(10) == 10
    task = tiny_task()
    model, cfg = tiny_model(task), with_(TINY, seeds=2, train_epochs=10)
    results = {}
    for per_call in (None, 4):  # 4 -> 5 calls of 2 epochs (not 4 + 4 + 2: two programs)
        plan = LoopPlan("map", epochs_per_call=per_call)
        runner = PipelineRunner(make_original(model, task, cfg, plan), plan)
        results[per_call] = runner(seed_keys(cfg.seed, cfg.seeds, "original"), None, task, progress=False)
        assert runner.drivers[0].epochs._program._cache_size() == 1
        assert results[per_call].history["train_loss"].shape == (2, 10)
    whole, in_calls = (jax.tree_util.tree_leaves(results[k].state) for k in (None, 4))
    for a, b in zip(whole, in_calls, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_a_study_spells_all_epochs_in_one_call_as_all_and_leaves_none_to_the_plan():
    from jaxunlearn.study import resolve_plan
    from tests.helpers import TINY, with_

    plan_default = auto_plan("conv")  # host-driven on XLA:CPU: one epoch per call
    assert resolve_plan(with_(TINY, epochs_per_call=None), "conv").epochs_per_call == plan_default.epochs_per_call
    assert resolve_plan(with_(TINY, epochs_per_call="all"), "conv").epochs_per_call is None  # LoopPlan: all
    assert resolve_plan(with_(TINY, epochs_per_call=3), "conv").epochs_per_call == 3
    for bad in (0, "some", 2.5, True):
        with pytest.raises(ValueError, match="epochs_per_call must be"):
            with_(TINY, epochs_per_call=bad)


@pytest.mark.parametrize("strategy", ["map", "vmap"])
def test_a_donated_carry_gives_the_same_models_in_less_memory_and_leaves_the_original_alone(strategy):
    """The epoch loop's carry is donated (written in place under "map"): the planned peak
    of a training call drops, the models are bitwise those of an undonated run, and the
    original model an unlearner starts from is still readable afterwards."""
    from jaxunlearn.runner import PipelineRunner
    from tests.helpers import TINY, build, tiny_model, tiny_task, train_original, with_

    task = tiny_task()
    model, cfg = tiny_model(task), with_(TINY, seeds=2)
    plan = LoopPlan(strategy, epochs_per_call=1)
    original = train_original(model, task, plan, cfg).state
    keys = seed_keys(cfg.seed, cfg.seeds, "finetune")

    def runner(donated: bool) -> PipelineRunner:
        run = PipelineRunner(build("finetune", model, task, cfg, plan), plan)
        if not donated:
            for driver in run.drivers:
                driver.epochs = SeedExecutor(driver.epochs.fn, plan, driver.epochs.n_per_seed)
        return run

    donated, kept = runner(True), runner(False)
    assert donated.planned_bytes(2, original, task) < kept.planned_bytes(2, original, task)
    a, b = donated(keys, original, task, progress=False), kept(keys, original, task, progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(original))
    np.asarray(jax.tree_util.tree_leaves(original.params)[0])  # still readable


def test_an_executor_refuses_a_donated_argument_that_does_not_come_back_first():
    run = SeedExecutor(lambda c, x: (c.sum(), c), LoopPlan("map"), n_per_seed=1, donate=1)
    with pytest.raises(ValueError, match="donated argument must come back"):
        run((jnp.ones((2, 3)),), (jnp.ones(()),))
    with pytest.raises(ValueError, match="donate must be between 0 and n_per_seed"):
        SeedExecutor(per_seed_fn, LoopPlan("map"), n_per_seed=2, donate=3)
