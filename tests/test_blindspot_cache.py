"""The blindspot proxy cache: the same student as running the proxy on every batch."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.study import seed_keys
from jaxunlearn.unlearn.blindspot import make_blindspot, proxy_cache_bytes
from tests.helpers import TINY, build, tiny_conv_model, tiny_image_task, tiny_model, tiny_task, train_original, with_


def max_abs_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def student_aux(pipeline, original, task):
    """The aux the student phase starts with, for seed 0 (the proxy is a fresh model here)."""
    proxy = pipeline.phases[0].start(jax.random.key(1), original, task, pipeline.hp(), ())[0]
    return pipeline.phases[1].start(jax.random.key(2), original, task, pipeline.hp(), (proxy,))[1]


@pytest.mark.parametrize("kind", ["mlp", "conv-batchnorm"])
def test_cached_and_per_batch_proxy_give_the_same_student(kind):
    if kind == "mlp":
        task, model, cfg = tiny_task(), tiny_model(tiny_task()), with_(TINY, seeds=2)
        plan = LoopPlan(seed_strategy="map", epochs_per_call=None)
    else:  # BatchNorm: the proxy must run on running statistics in both paths
        task = tiny_image_task()
        model, cfg = tiny_conv_model(task), with_(TINY, seeds=2, batch_size=16, train_epochs=1)
        plan = LoopPlan(seed_strategy="host", epochs_per_call=1, unroll=True)
    original = train_original(model, task, plan, cfg).state
    keys = seed_keys(0, cfg.seeds, "blindspot")
    out = {}
    for cache in (True, False):
        pipeline = make_blindspot(model, task, cfg, plan, cfg.resolved_settings("blindspot"), proxy_cache=cache)
        assert ("cache" in student_aux(pipeline, jax.tree_util.tree_map(lambda a: a[0], original), task)) == cache
        out[cache] = PipelineRunner(pipeline, plan)(keys, original, task, progress=False)
    # The student moved away from the original, so equality below is not trivial.
    assert max_abs_diff(out[True].state.params, original.params) > 1e-3
    assert max_abs_diff(out[True].state.params, out[False].state.params) <= 1e-5
    np.testing.assert_allclose(out[True].history["train_loss"], out[False].history["train_loss"], rtol=1e-5)


def test_cache_is_chosen_only_without_augmentation():
    task = tiny_image_task()
    model = tiny_model(task, "allcnn", width=4)
    cfg = with_(TINY, batch_size=16)
    plan = LoopPlan(seed_strategy="host", epochs_per_call=1, unroll=True)
    original = model.fresh_state(jax.random.key(0), 1e-3)
    assert "cache" in student_aux(build("blindspot", model, task, cfg, plan), original, task)
    augmented = with_(cfg, augment_pad=2)
    assert "proxy" in student_aux(build("blindspot", model, task, augmented, plan), original, task)
    with pytest.raises(ValueError, match="augment_pad == 0"):
        make_blindspot(model, task, augmented, plan, augmented.resolved_settings("blindspot"), proxy_cache=True)


def test_cache_size_counts_forget_rows_and_attention_positions():
    task = tiny_image_task()  # 8x8 images; AllCNN width 4
    model = tiny_model(task, "allcnn", width=4)
    forget = int(task.train.host_indices("forget").size)
    _, feats = jax.eval_shape(
        lambda p, s: model.apply_eval(p, s, task.train.x[:1]), *jax.eval_shape(model.init, jax.random.key(0))
    )
    positions = sum(int(np.prod(f.shape[1:3])) for f in feats)
    assert proxy_cache_bytes(model, task) == forget * (1 + positions) * 4


def test_a_padded_cache_gives_the_same_student_and_one_program_for_every_forget_count():
    """Rows as data: the cache has a slot for every training row (the forget rows' values
    first, computed on the forget rows alone), the student's weights are bitwise those of
    the exact-size cache, and its epochs compile one program for two forget counts."""
    task = tiny_task()
    model, cfg = tiny_model(task), with_(TINY, seeds=2)
    exact_plan, padded_plan = LoopPlan(seed_strategy="map", rows_as_data=False), LoopPlan(seed_strategy="map")
    original = train_original(model, task, exact_plan, cfg).state
    keys = seed_keys(0, cfg.seeds, "blindspot")
    settings = cfg.resolved_settings("blindspot")
    states = {}
    for plan in (exact_plan, padded_plan):
        pipeline = make_blindspot(model, task, cfg, plan, settings, proxy_cache=True)
        states[plan] = PipelineRunner(pipeline, plan)(keys, original, task, progress=False).state
    np.testing.assert_array_equal(
        np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(states[exact_plan].params)]),
        np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(states[padded_plan].params)]),
    )

    forget = np.asarray(task.train.forget).copy()
    forget[np.flatnonzero(forget < 0.5)[:5]] = 1.0  # five more forget rows: another count
    more = task.replace(train=task.train.replace(forget=jax.numpy.asarray(forget)))
    seed0 = jax.tree_util.tree_map(lambda a: a[0], original)
    texts = []
    for t in (task, more):
        pipeline = make_blindspot(model, t, cfg, padded_plan, settings, proxy_cache=True)
        fit, hp = pipeline.phases[1].fit, pipeline.hp()
        proxy = pipeline.phases[0].start(jax.random.key(1), seed0, t, hp, ())[0]
        student, aux = pipeline.phases[1].start(jax.random.key(2), seed0, t, hp, (proxy,))
        assert all(a.shape[0] == t.train.used for a in jax.tree_util.tree_leaves(aux["cache"]))
        carry = fit.init_carry(jax.random.key(3), student, hp)
        texts.append(jax.jit(fit.run_epochs).lower(carry, jax.numpy.arange(1), t, hp, aux).as_text())
    assert texts[0] == texts[1]
