"""SISA (jaxunlearn.unlearn.sisa, jaxunlearn.shards): the shard assignment, exactness
against a one-model-at-a-time reference, the per-example test at the noise floor, the
study row, resume, chunks and bad settings."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Split
from jaxunlearn.data.sharding import shard_rows, shard_task, slice_epochs
from jaxunlearn.metrics.epsilon import forgetting_quality
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.shards import aggregate_predictions, assignment, fold, run_sharded
from jaxunlearn.study import seed_keys
from jaxunlearn.train.loop import predict
from tests.helpers import TINY, build, tiny_model, tiny_task, with_

pytestmark = pytest.mark.xdist_group("sisa")
PLAN = LoopPlan(seed_strategy="map", epochs_per_call=None)


def direct_run(pipeline, keys, original, task, rows, part):
    """The ``run`` hook without chunks or checkpoints: one call over the given models."""
    return PipelineRunner(pipeline, PLAN)(keys, original, task, progress=False, rows=rows)


def sisa_pipeline(task, model, cfg, **settings):
    return build("sisa", model, task, cfg, PLAN, **settings)


def test_shards_partition_every_row_once_into_equal_lengths():
    rows = shard_rows(103, shards=4, slices=3, seed=0, replica=2)
    assert rows.shape == (4, 27)  # ceil(103 / 4) = 26 rows per shard -> 3 slices of 9
    used = rows[rows >= 0]
    assert np.array_equal(np.sort(used), np.arange(103))
    assert not np.array_equal(rows, shard_rows(103, shards=4, slices=3, seed=0, replica=3))
    assert np.array_equal(rows, shard_rows(103, shards=4, slices=3, seed=0, replica=2))
    assert slice_epochs(10, 3) == [3, 3, 4] and sum(slice_epochs(7, 7)) == 7


def test_models_with_their_own_rows_shard_those_rows():
    """U-LiRA's shadows each shard their own row list: seed k's shards partition rows[k]."""
    from jaxunlearn.shards import own_shards
    from jaxunlearn.unlearn.base import Shards

    spec = Shards(count=3, slices=2, aggregate="mean", slice_length=3, stages=())
    rows = np.stack([np.arange(100, 116), np.arange(200, 232, 2)])  # two seeds, 16 rows each
    shards = own_shards(spec, rows, seed=0)
    assert shards.shape == (6, 6)
    for k in range(2):
        mine = shards[3 * k : 3 * k + 3]
        assert np.array_equal(np.sort(mine[mine >= 0]), rows[k])


def one_at_a_time(spec, task, seeds, seed, keys):
    """The reference: each shard model alone (``Pipeline.run``, one seed, no batching),
    trained as SISA would train it without the forget rows: its stages from scratch on its
    rows with forget rows as holes, each stage with the retraining key exactly where a
    forget row is in that stage's rows or an earlier one's, else the training key."""
    rows = assignment(spec, task.train.size, seeds, seed)
    forget = np.asarray(task.train.forget) > 0.5
    base, length = shard_task(task), spec.slice_length
    hp = spec.stages[0].hp()
    models = []
    for slot in range(rows.shape[0]):
        state, touched = None, False
        for r, stage in enumerate(spec.stages):
            mine = rows[slot, : (r + 1) * length]
            touched = touched or bool(np.any(forget[mine[mine >= 0]]))
            holed = np.where((mine >= 0) & forget[np.maximum(mine, 0)], -1, mine)
            key = jax.random.fold_in(keys[slot], 2 * r + (1 if touched else 0))
            state, _ = jax.jit(stage.run)(key, state, base.with_train_rows(holed), hp)
        models.append(state.params)
    return models


@pytest.mark.parametrize("slices", [1, 2])
def test_unlearned_ensemble_is_the_ensemble_trained_without_the_forget_rows(slices):
    """Only some shards hold a forget row (4 forget rows, 4 shards, 2 seeds): they are
    retrained, from the slice that held the row; the others keep their model. Each shard
    model must equal the one-model-at-a-time reference."""
    task = tiny_task()
    forget = np.zeros(task.train.size, np.float32)
    forget[[3, 50, 97, 140]] = 1.0
    task = task.replace(train=Split(x=task.train.x, y=task.train.y, forget=jax.numpy.asarray(forget)))
    model, cfg = tiny_model(task), with_(TINY, train_epochs=2, batch_size=16)
    spec = sisa_pipeline(task, model, cfg, shards=4, slices=slices).shards
    keys = seed_keys(0, 2 * 4, "sisa")
    logs = []
    unlearned, trained = run_sharded(spec, task, 2, 0, keys, direct_run, PLAN, logs.append)
    retrained = unlearned.history["shards_retrained"][:, 0]
    assert 0 < retrained.sum() < 8, "the test needs both kinds of shard"
    reference = one_at_a_time(spec, task, 2, 0, keys)
    for slot in range(8):
        got = jax.tree_util.tree_map(lambda a, slot=slot: a[slot], unlearned.state.params)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(reference[slot]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    changed = [
        not np.array_equal(
            np.asarray(jax.tree_util.tree_leaves(unlearned.state.params)[0][s]),
            np.asarray(jax.tree_util.tree_leaves(trained.state.params)[0][s]),
        )
        for s in range(8)
    ]
    assert sum(changed) == retrained.sum()
    assert unlearned.members == 4 and unlearned.run > 0
    if slices == 2:  # a shard whose forget row is in slice 2 retrained only that slice
        assert unlearned.history["slices_retrained"].sum() < 2 * retrained.sum()


def ensemble_forget_predictions(result, task, model):
    preds = jax.vmap(lambda p, s: predict(model, p, s, task.train.x, PLAN))(
        result.state.params, result.state.batch_stats
    )
    forget = np.asarray(task.train.forget) > 0.5
    return aggregate_predictions(np.asarray(preds)[..., 0], result.members, result.aggregate)[:, forget]


def test_per_example_forgetting_of_sisa_sits_at_the_noise_floor():
    """NeurIPS'23 forgetting quality of unlearned SISA ensembles against SISA ensembles
    trained without the forget rows (32 seeds each) is as high as that of a second,
    independent set of such ensembles (the noise floor), while the ensembles as trained,
    forget rows included, score lower (so the test can tell)."""
    task, seeds, shards = tiny_task(), 32, 2
    model, cfg = tiny_model(task), with_(TINY, train_epochs=3)
    spec = sisa_pipeline(task, model, cfg, shards=shards).shards
    unlearned, trained = run_sharded(
        spec, task, seeds, 0, seed_keys(0, seeds * shards, "sisa"), direct_run, PLAN, lambda _: None
    )
    forget = np.asarray(task.train.forget) > 0.5

    def without_forget_rows(first_seed: int):
        rows = assignment(spec, task.train.size, seeds, 0)
        holed = np.where((rows >= 0) & forget[np.maximum(rows, 0)], -1, rows)
        keys = fold(seed_keys(0, seeds * shards, "sisa", first=first_seed), 1)
        result = direct_run(spec.stages[0], keys, None, shard_task(task), holed, "")
        return ensemble_forget_predictions(_as_ensemble(result, spec), task, model)

    reference, floor = without_forget_rows(10_000), without_forget_rows(20_000)
    q_unlearned, _ = forgetting_quality(ensemble_forget_predictions(unlearned, task, model), reference)
    q_floor, _ = forgetting_quality(floor, reference)
    q_trained, _ = forgetting_quality(ensemble_forget_predictions(trained, task, model), reference)
    # Measured on the developers' CPU over four other key streams: floor 0.098-0.125,
    # trained 0.024-0.030; here unlearned 0.100, floor 0.098, trained 0.023. The bounds
    # leave room for another machine's draws: a statistical test, not bitwise.
    assert q_unlearned >= 0.6 * q_floor, (q_unlearned, q_floor)
    assert q_trained <= 0.5 * q_floor, (q_trained, q_floor)


def _as_ensemble(result, spec):
    import dataclasses

    return dataclasses.replace(result, members=spec.count, aggregate=spec.aggregate)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shards": 0}, "shards must be a positive integer"),
        ({"slices": 0}, "slices must be a positive integer"),
        ({"aggregate": "mode"}, "aggregate must be one of"),
        ({"shards": 100_000}, "only 720 training rows"),
        ({"shards": 2, "slices": 400}, "a shard holds 360 rows"),
        ({"shards": 2, "slices": 4}, "need at least as many training epochs"),
        ({"shards": 30, "batch_size": 32}, "fewer than sisa.batch_size 32"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_sisa_settings_are_refused_before_anything_compiles(settings, message):
    from jaxunlearn.study import prepare_study

    with pytest.raises(ValueError, match=message):
        cfg = with_(TINY, unlearners=("sisa",), settings={"sisa": settings})
        _, task, model, _, _ = prepare_study(cfg, log=lambda _: None)
        sisa_pipeline(task, model, cfg)


def test_sisa_study_row_resumes_and_chunks(tmp_path):
    """A study with a sisa row: aggregated metrics, no AIN, the shards it retrained; a
    rerun with --resume loads it; a chunked run gives the same ensembles."""
    from jaxunlearn.study import run_study

    cfg = StudyConfig(**{**TINY.__dict__, "unlearners": ("sisa",), "seeds": 2, "settings": {"sisa": {"shards": 2}}})
    first = run_study(cfg, progress=False, log=lambda _: None, checkpoint_dir=tmp_path)
    assert first.rows == ["original", "retrain", "sisa"]
    assert np.all(np.isnan(first.per_seed["sisa"]["ain"])) and np.all(
        np.isfinite(first.per_seed["sisa"]["wasserstein"])
    )
    assert first.stage_stats["sisa"]["shards_retrained"] == [2.0, 2.0]
    assert first.stage_stats["sisa"]["ensemble_training_s"][0] > 0
    messages: list[str] = []
    again = run_study(cfg, progress=False, log=messages.append, checkpoint_dir=tmp_path, resume=True)
    assert any(m.startswith("sisa: loaded from") for m in messages), messages
    np.testing.assert_array_equal(again.per_seed["sisa"]["test_retain_mae"], first.per_seed["sisa"]["test_retain_mae"])
    chunked = run_study(cfg, progress=False, log=lambda _: None, chunk=1)
    np.testing.assert_allclose(
        chunked.per_seed["sisa"]["test_retain_mae"], first.per_seed["sisa"]["test_retain_mae"], rtol=1e-6
    )


def test_sisa_in_the_neurips23_and_ulira_evaluations():
    from jaxunlearn.evaluation import EvaluationConfig, run_evaluation

    cfg = with_(TINY, unlearners=("sisa",), settings={"sisa": {"shards": 2}})
    messages: list[str] = []
    result, _ = run_evaluation(  # a memory limit that fits one shard model per call: chunks
        cfg,
        EvaluationConfig("neurips23", models=4, attack_models=2, memory_limit="60KB"),
        progress=False,
        log=messages.append,
    )
    assert any(m.startswith("sisa#shards-slice1: 8 shard models per call need more than") for m in messages)
    assert result.rows[-1] == "sisa" and 0.0 <= result.metrics["sisa"]["forgetting_quality"] <= 1.0
    assert len(result.per_example["sisa"]["eps"]) == len(result.example_rows)
    # U-LiRA: every shadow's ensemble shards its own rows (its group's IN candidates and the
    # retain rows), and unlearning retrains the shards holding its candidates.
    result, _ = run_evaluation(cfg, EvaluationConfig("ulira", models=8, groups=4), progress=False, log=lambda _: None)
    assert result.rows[-1] == "sisa" and 0.0 <= result.metrics["sisa"]["auc"] <= 1.0
    assert result.timings["shadows-sisa"]["models"] == 8
