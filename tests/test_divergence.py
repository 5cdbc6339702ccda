"""NaN/inf during training is detected per seed, reported, and leaves the other seeds intact."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import unlearn
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.study import run_study, seed_keys
from jaxunlearn.train.loop import all_finite, guard_divergence
from jaxunlearn.train.state import TrainState
from tests.helpers import TINY, build, registered, tiny_model, tiny_task, train_original

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("divergence")

PLAN = LoopPlan(seed_strategy="vmap", epochs_per_call=None)


def _state(value: float, step: int = 4) -> TrainState:
    return TrainState(jnp.asarray(step, jnp.int32), {"w": jnp.full((3,), value)}, {}, None)


def test_all_finite():
    assert bool(all_finite({"a": jnp.ones(3), "b": jnp.zeros((2, 2))}))
    assert not bool(all_finite({"a": jnp.ones(3), "b": jnp.array([0.0, jnp.inf])}))
    assert not bool(all_finite([jnp.array([jnp.nan])]))
    assert bool(all_finite({"i": jnp.array([1, 2], jnp.int32)}))  # integer leaves are ignored


def test_guard_keeps_old_state_and_records_first_step():
    old, new = _state(1.0), _state(jnp.nan, step=5)
    (state, at), _ = guard_divergence(old, new, jnp.asarray(0.5), jnp.asarray(-1, jnp.int32))
    assert int(at) == 4 and float(state.params["w"][0]) == 1.0 and int(state.step) == 4
    # a finite step after the divergence does not unfreeze the seed or move the record
    (state2, at2), _ = guard_divergence(state, _state(2.0, step=5), jnp.asarray(0.5), at)
    assert int(at2) == 4 and float(state2.params["w"][0]) == 1.0
    # a non-finite loss alone counts too
    (_, at3), _ = guard_divergence(old, _state(2.0), jnp.asarray(jnp.inf), jnp.asarray(-1, jnp.int32))
    assert int(at3) == 4
    # a healthy step passes through untouched
    (state4, at4), _ = guard_divergence(old, _state(2.0, 5), jnp.asarray(0.5), jnp.asarray(-1, jnp.int32))
    assert int(at4) == -1 and float(state4.params["w"][0]) == 2.0 and int(state4.step) == 5


@pytest.fixture(scope="module")
def setup():
    task = tiny_task()
    model = tiny_model(task)
    original = train_original(model, task, PLAN)
    return task, model, original


def test_original_training_is_finite(setup):
    _, _, original = setup
    assert original.divergence("original") == []
    assert original.diverged_at.shape == (TINY.seeds, 1)


def test_one_seed_diverges_others_untouched(setup):
    task, model, original = setup
    pipeline = build("finetune", model, task, TINY, PLAN)
    keys = seed_keys(0, TINY.seeds, "finetune")
    good = PipelineRunner(pipeline, PLAN)(keys, original.state, task, progress=False)
    lr = np.full(TINY.seeds, pipeline.default_hp["lr"], np.float32)
    lr[1] = np.inf  # seed 1's first update is infinite
    bad = PipelineRunner(pipeline, PLAN)(keys, original.state, task, hp={"lr": lr}, progress=False)
    events = bad.divergence("finetune")
    assert events == [{"seed": 1, "stage": "finetune", "phase": pipeline.phases[0].name, "step": 0}]
    assert bool(all_finite(bad.state.params)), "the diverged seed keeps its last finite weights"
    for seed in (0, 2):
        for a, b in zip(
            jax.tree_util.tree_leaves(good.state.params), jax.tree_util.tree_leaves(bad.state.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a[seed]), np.asarray(b[seed]), rtol=1e-6, atol=1e-7)
    # the diverged seed was frozen at the original's weights (its first step failed)
    for a, b in zip(
        jax.tree_util.tree_leaves(original.state.params), jax.tree_util.tree_leaves(bad.state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))


def test_study_reports_divergence_and_masks_only_that_seed():
    real = unlearn.get("gaussian")

    def make_bad(model, task, cfg, plan, settings):
        pipeline = real.make(model, task, cfg, plan, settings)
        lr = np.full(cfg.seeds, pipeline.default_hp["lr"], np.float32)
        lr[2] = np.inf
        return dataclasses.replace(pipeline, default_hp=dict(pipeline.default_hp, lr=lr))

    logs: list[str] = []
    with registered([dataclasses.replace(real, make=make_bad)]):
        result = run_study(TINY, progress=False, log=logs.append, task=tiny_task())
    assert [(e["seed"], e["stage"]) for e in result.divergence] == [(2, "gaussian")]
    assert any("seed 2 diverged" in line and "gaussian" in line for line in logs)
    assert np.isnan(result.per_seed["gaussian"]["test_forget_mae"][2])
    assert np.isfinite(result.per_seed["gaussian"]["test_forget_mae"][:2]).all()
    assert result.summary["gaussian"]["test_forget_mae"]["n"] == TINY.seeds - 1
    assert np.isfinite(result.per_seed["blindspot"]["test_forget_mae"]).all(), "other rows keep every seed"
