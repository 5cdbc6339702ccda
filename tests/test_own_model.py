"""A user's own Flax model in a study: a Linen module that returns only its predictions and
takes no ``train`` argument runs a whole study (the README runs an NNX one); unsupported
models are refused before anything compiles; checkpoint keys follow the model's class and
fields (tests/test_model_identity.py: and its code)."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx

from jaxunlearn.checkpoints import CheckpointStore
from jaxunlearn.data.user import task_from_arrays
from jaxunlearn.models.user import NNXModel, describe_model
from jaxunlearn.study import run_study
from tests.helpers import TINY, with_


class PredOnly(nn.Module):
    """No features, no ``train`` argument: the adapter's simplest case."""

    hidden: int = 8
    activation: object = nn.relu

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(self.activation(nn.Dense(self.hidden)(x)))


class WrongShape(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x)[:, 0]  # [B], not [B, 1]


class WithDropout(nnx.Module):
    def __init__(self, *, rngs):
        self.lin = nnx.Linear(4, 1, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.lin(x))


def arrays_task():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((240, 4)).astype(np.float32)
    y = x[:, 0] - 2 * x[:, 1] + 0.1 * rng.standard_normal(240)
    forget = {"train": y[:160] > 1.5, "val": y[160:200] > 1.5, "test": y[200:] > 1.5}
    return task_from_arrays((x[:160], y[:160]), (x[160:200], y[160:200]), (x[200:], y[200:]), forget=forget)


def test_a_linen_module_returning_only_predictions_runs_a_whole_study(tmp_path):
    cfg = with_(TINY, seeds=2, unlearners=("finetune",))
    result = run_study(
        cfg, progress=False, log=lambda m: None, task=arrays_task(), model=PredOnly(hidden=8), checkpoint_dir=tmp_path
    )
    assert result.config.model.startswith(f"{__name__}.PredOnly [code ")  # the class's name and a digest of its code
    assert dict(result.config.model_kwargs) == {"activation": "jax._src.nn.functions.relu", "hidden": 8} or dict(
        result.config.model_kwargs
    )["activation"].endswith("relu")
    for row in ("original", "retrain", "finetune"):
        assert np.all(np.isfinite(result.per_seed[row]["test_forget_mae"])), row
        assert "PredOnly" not in result.checkpoints[row]  # folders are named by row and key
    # forgetting happened: retraining moved the forget-set error away from the original's
    assert np.mean(result.per_seed["retrain"]["wasserstein"]) == 0.0
    assert np.mean(result.per_seed["original"]["wasserstein"]) > 0.0


def test_checkpoint_keys_follow_the_models_class_and_fields():
    def key(model):
        name, fields = describe_model(model)
        cfg = with_(TINY, model=name, model_kwargs=fields)
        return CheckpointStore("/nonexistent", cfg, "f" * 64).key("original")

    assert key(PredOnly(hidden=8)) == key(PredOnly(hidden=8))
    assert key(PredOnly(hidden=8)) != key(PredOnly(hidden=9))
    assert key(PredOnly(hidden=8)) != key(PredOnly(hidden=8, activation=nn.tanh))
    assert key(NNXModel(WithDropout)) != key(PredOnly())
    assert describe_model(NNXModel(WithDropout))[0].startswith(f"{__name__}.WithDropout [code ")
    assert describe_model(NNXModel(WithDropout))[1] == ()


@pytest.mark.parametrize(
    "model, message",
    [
        (WrongShape(), "must return predictions of shape [B, 1]"),
        (NNXModel(WithDropout), "stochastic layers and stored Rngs are not supported"),
        (WithDropout(rngs=nnx.Rngs(0)), "give NNXModel(type(m), **its arguments)"),
    ],
)
def test_unsupported_models_are_refused_before_anything_compiles(model, message):
    compiled = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiled.append(event) if event.endswith("backend_compile_duration") else None
    )
    with pytest.raises(ValueError) as info:
        run_study(with_(TINY, seeds=2), progress=False, log=lambda m: None, task=arrays_task(), model=model)
    assert message in str(info.value)
    assert not compiled
