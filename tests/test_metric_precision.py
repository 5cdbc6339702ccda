"""Metrics measure models in float32 whatever the training compute dtype."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.checkpoints import CheckpointStore, data_fingerprint
from jaxunlearn.study import build_model, run_study, seed_keys
from jaxunlearn.train.state import finished
from tests.helpers import TINY, tiny_task


def test_bfloat16_study_is_measured_in_float32(tmp_path):
    task = tiny_task()
    cfg = dataclasses.replace(TINY, seeds=2, unlearners=(), dtype="bfloat16")
    result = run_study(cfg, progress=False, log=lambda _: None, task=task, checkpoint_dir=tmp_path)

    bf16_model = build_model(cfg, task)
    fp32_model = build_model(dataclasses.replace(cfg, dtype="float32"), task)
    store = CheckpointStore(tmp_path, cfg, data_fingerprint(task))
    abstract = finished(  # a stage is saved without its optimizer state
        jax.eval_shape(
            jax.vmap(lambda k: bf16_model.fresh_state(k, jnp.float32(0.0))), seed_keys(cfg.seed, cfg.seeds, "original")
        )
    )
    state = store.load("original", abstract).state

    def forward(model):  # [S, N] predictions in target units
        pred = jax.vmap(lambda p, b: model.apply_eval(p, b, task.test.x)[0])(state.params, state.batch_stats)
        return np.asarray(pred, np.float64)[..., 0] * float(task.y_std) + float(task.y_mean)

    measured = result.predictions["original"]["test"]
    np.testing.assert_allclose(measured, forward(fp32_model), rtol=1e-5, atol=1e-5)
    # The bf16 forward really is different, so the check above can tell the two apart.
    assert np.max(np.abs(forward(bf16_model) - forward(fp32_model))) > 1e-3
