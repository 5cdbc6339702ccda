"""NegGrad+ and SCRUB (general-unlearning baselines beyond the paper): their objectives
against NumPy, SCRUB's phase layout, and that each does what it is for on a tiny task.
The registry-wide contract (jit, shapes, seeds, determinism, declared hyperparameters)
is in test_unlearner_conformance.py."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import unlearn
from jaxunlearn.checkpoints import config_diff
from jaxunlearn.config import StudyConfig
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan, tree_index
from jaxunlearn.study import RELEARN_KEY_ID, seed_keys
from jaxunlearn.train.loop import predict
from jaxunlearn.unlearn.neggrad import neggrad_loss
from jaxunlearn.unlearn.scrub import scrub_loss
from tests.helpers import TINY, build, one_seed_setup, tiny_model, tiny_task, with_

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("neggrad_scrub")

PLAN = LoopPlan(seed_strategy="map", epochs_per_call=None)


@pytest.fixture(scope="module")
def setup():
    return one_seed_setup(PLAN)


def _batch(task, rows: np.ndarray) -> dict:
    idx = jnp.asarray(rows, jnp.int32)
    w = jnp.ones(idx.shape, jnp.float32).at[-1].set(0.0)  # a padded row must not count
    return {"idx": idx, "x": task.train.x[idx], "y": task.train.y[idx], "w": w, "forget": task.train.forget[idx]}


def test_neggrad_loss_matches_numpy(setup):
    task, model, original = setup
    state = tree_index(original, 0)
    batch = _batch(task, np.arange(40))
    hp = {"retain_weight": jnp.asarray(0.8)}
    loss, _ = neggrad_loss(model, "l1")(state.params, state.batch_stats, batch, None, hp, None)
    pred = np.asarray(model.apply_train(state.params, state.batch_stats, batch["x"], batch["w"] > 0)[0])[:, 0]
    err = np.abs(pred - np.asarray(batch["y"])[:, 0])
    w, f = np.asarray(batch["w"]), np.asarray(batch["forget"])
    assert f[:-1].sum() > 0 and (1 - f[:-1]).sum() > 0, "the batch must mix forget and retain rows"
    want = 0.8 * np.sum(err * w * (1 - f)) / np.sum(w * (1 - f)) - 0.2 * np.sum(err * w * f) / np.sum(w * f)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


@pytest.mark.parametrize("maximise", [True, False])
def test_scrub_loss_matches_numpy_with_cached_or_live_teacher(setup, maximise):
    task, model, original = setup
    teacher = tree_index(original, 0)
    # A student a little away from the teacher.
    params = jax.tree_util.tree_map(lambda p: p + 0.05 * jnp.sign(p), teacher.params)
    batch = _batch(task, np.arange(30, 62))
    hp = {"distill_weight": jnp.asarray(0.7)}
    cached = {"teacher_pred": predict(model, teacher.params, teacher.batch_stats, task.train.x, PLAN)}
    live = {"teacher": (teacher.params, teacher.batch_stats)}
    fn = scrub_loss(model, "mse", maximise)
    a, _ = fn(params, teacher.batch_stats, batch, None, hp, cached)
    b, _ = fn(params, teacher.batch_stats, batch, None, hp, live)
    s = np.asarray(model.apply_train(params, teacher.batch_stats, batch["x"], batch["w"] > 0)[0])[:, 0]
    t = np.asarray(model.apply_eval(teacher.params, teacher.batch_stats, batch["x"])[0])[:, 0]
    y, w = np.asarray(batch["y"])[:, 0], np.asarray(batch["w"])
    distance = np.sum((s - t) ** 2 * w) / w.sum()
    want = -distance if maximise else np.sum((s - y) ** 2 * w) / w.sum() + 0.7 * distance
    assert distance > 0
    np.testing.assert_allclose([float(a), float(b)], [want, want], rtol=1e-5)


def test_scrub_phases_count_steps_from_zero(setup):
    """Each SCRUB phase continues from the previous phase's model but counts its steps from 0,
    as every other phase does, so a divergence is reported at its step within its phase."""
    task, model, original = setup
    pipeline = build("scrub", model, task, TINY, PLAN, epochs=2, max_epochs=1)
    earlier = tree_index(original, 0)
    earlier = earlier.replace(step=earlier.step + 7)
    state, _ = pipeline.phases[1].start(jax.random.key(0), tree_index(original, 0), task, pipeline.hp(), [earlier])
    assert int(state.step) == 0
    assert all(
        jnp.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(earlier.params), strict=True)
    )


def test_runner_fills_in_the_hyperparameters_a_call_leaves_out(setup):
    """``PipelineRunner(...)(hp={...})`` with some hyperparameters takes the pipeline's defaults
    for the rest (it used to fail with a KeyError inside the trace) and refuses unknown ones."""
    task, model, original = setup
    pipeline = build("scrub", model, task, with_(TINY, seeds=1), PLAN, epochs=1, max_epochs=1)
    runner = PipelineRunner(pipeline, PLAN)
    keys = seed_keys(0, 1, "scrub")
    partial = runner(keys, original, task, hp={"distill_weight": 2.0}, progress=False)
    assert partial.state.opt_state is None, "a finished stage keeps no optimizer state"
    full = runner(keys, original, task, hp=pipeline.hp(distill_weight=2.0), progress=False)
    for a, b in zip(jax.tree.leaves(partial.state.params), jax.tree.leaves(full.state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['nope'\]"):
        runner(keys, original, task, hp={"nope": 1.0}, progress=False)


def test_scrub_phase_layout():
    task = tiny_task()
    pipeline = build("scrub", tiny_model(task), task, TINY, PLAN, epochs=3, max_epochs=2)
    layout = [(p.name, p.fit.cfg.rows, p.fit.cfg.epochs) for p in pipeline.phases]
    # Epochs 1-2: a min pass then a max pass; epoch 3: a min pass.
    assert layout == [
        ("min1", "retain", 1),
        ("max1", "forget", 1),
        ("min2", "retain", 1),
        ("max2", "forget", 1),
        ("min", "retain", 1),
    ]
    only_max = build("scrub", tiny_model(task), task, TINY, PLAN, epochs=1, max_epochs=1)
    assert [p.name for p in only_max.phases] == ["min1", "max1"]
    # The forget rows bound the max pass's batch, not the study's batch size.
    forget = int(task.train.host_indices("forget").size)
    big = build("scrub", tiny_model(task), task, with_(TINY, batch_size=forget + 10), PLAN)
    assert big.phases[1].fit.cfg.batch_size == forget and big.phases[0].fit.cfg.batch_size == forget + 10
    # --scrub-forget-batch sets the max pass's batch alone: several steps over a small forget set.
    small = build("scrub", tiny_model(task), task, with_(TINY, batch_size=forget + 10), PLAN, forget_batch=3)
    assert small.phases[1].fit.cfg.batch_size == 3 and small.phases[1].fit.steps_per_epoch == -(-forget // 3)
    assert small.phases[0].fit.cfg.batch_size == forget + 10
    with pytest.raises(ValueError, match=rf"scrub.forget_batch \({forget + 1}\) must be <= the {forget} forget"):
        build("scrub", tiny_model(task), task, TINY, PLAN, forget_batch=forget + 1)


def _mean_abs(a, b, mask) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))[np.asarray(mask) > 0.5]))


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_scrub_max_pass_moves_forget_predictions_away_from_the_teacher(setup, loss):
    task, model, original = setup
    pipeline = build("scrub", model, task, with_(TINY, loss=loss, batch_size=8), PLAN)
    teacher = tree_index(original, 0)
    t = predict(model, teacher.params, teacher.batch_stats, task.train.x, PLAN)
    forget = task.train.forget

    def distances(phases: int) -> tuple[float, float]:
        runner = PipelineRunner(dataclasses.replace(pipeline, phases=pipeline.phases[:phases]), PLAN)
        student = tree_index(runner(seed_keys(0, 1, "scrub"), original, task, progress=False).state, 0)
        s = predict(model, student.params, student.batch_stats, task.train.x, PLAN)
        return _mean_abs(s, t, forget), _mean_abs(s, t, 1.0 - forget)

    (forget_min, retain_min), (forget_max, retain_max) = distances(1), distances(2)
    assert forget_min > 0  # the min pass moved the student off the teacher (a max pass needs that)
    # The max pass (one epoch over the forget rows) moves the forget rows' predictions away
    # from the teacher's, more than it moves the retain rows'.
    assert forget_max > 1.3 * forget_min
    assert forget_max - forget_min > 1.5 * (retain_max - retain_min)


def test_neggrad_raises_forget_error_more_than_retain_error(setup):
    task, model, original = setup
    runner = PipelineRunner(build("neggrad", model, task, TINY, PLAN, epochs=3), PLAN)
    out = runner(seed_keys(0, 1, "neggrad"), original, task, hp={"lr": 1e-3, "retain_weight": 0.5}, progress=False)
    before, after = tree_index(original, 0), tree_index(out.state, 0)
    y, forget = task.train.y, task.train.forget

    def err(s, m):
        return _mean_abs(predict(model, s.params, s.batch_stats, task.train.x, PLAN), y, m)

    assert err(after, forget) - err(before, forget) > err(after, 1.0 - forget) - err(before, 1.0 - forget) + 0.05


def test_every_stage_has_its_own_key_id_and_the_built_ins_keep_theirs():
    ids = {u.name: u.key_id for u in unlearn.all_stages()}
    assert len(set(ids.values())) == len(ids) and RELEARN_KEY_ID not in ids.values()
    # The ids folded into every published study's seed keys: never to change.
    assert ids == {
        "original": 0,
        "retrain": 1,
        "finetune": 2,
        "gaussian": 3,
        "blindspot": 4,
        "neggrad": 5,
        "scrub": 6,
        "ssd": 7,
        "lfssd": 8,
        "sisa": 9,
    }


def test_resume_accepts_settings_added_after_the_checkpoints():
    saved = json_like(StudyConfig(seeds=3))
    del saved["settings"]  # written before the field existed
    saved["scrub_epochs"] = 5  # a field that no longer exists
    assert config_diff(saved, StudyConfig(seeds=3).to_dict()) == []
    assert config_diff(saved, StudyConfig(seeds=4).to_dict()) == ["seeds: 3 there, 4 now"]


def json_like(cfg: StudyConfig) -> dict:
    import json

    return json.loads(json.dumps(cfg.to_dict(), default=str))


def test_repeated_passes_share_one_compiled_loop_and_match_a_single_run(setup):
    task, model, original = setup
    pipeline = build("scrub", model, task, TINY, PLAN, epochs=3, max_epochs=2)
    runner = PipelineRunner(pipeline, PLAN)
    d = runner.drivers
    assert d[0].epochs is d[2].epochs and d[1].epochs is d[3].epochs and d[0].epochs is not d[1].epochs
    keys = seed_keys(0, 1, "scrub")
    batched = tree_index(runner(keys, original, task, progress=False).state, 0)
    single, _ = jax.jit(pipeline.run)(keys[0], tree_index(original, 0), task, pipeline.hp())
    for a, b in zip(jax.tree_util.tree_leaves(batched.params), jax.tree_util.tree_leaves(single.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
