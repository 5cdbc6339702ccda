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
    """Stores its Rngs in the Dropout layer: refused (state beyond parameters), with the route."""

    def __init__(self, *, rngs):
        self.lin = nnx.Linear(4, 1, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.lin(x))


class NNXDropout(nnx.Module):
    """Dropout keyed per call: jaxunlearn passes rngs=nnx.Rngs(dropout=key) in training."""

    def __init__(self, *, rngs):
        self.lin, self.out = nnx.Linear(4, 16, rngs=rngs), nnx.Linear(16, 1, rngs=rngs)
        self.drop = nnx.Dropout(0.5)

    def __call__(self, x, rngs=None):
        return self.out(self.drop(nnx.relu(self.lin(x)), rngs=rngs))


class LinenDropout(nn.Module):
    """Mode through ``deterministic`` (False in training), as nn.Dropout takes it."""

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        return nn.Dense(1)(nn.Dropout(0.5, deterministic=deterministic)(nn.relu(nn.Dense(16)(x))))


class BatchNormNoMask(nn.Module):
    """BatchNorm without a row-mask argument: the padding would enter its statistics."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1)(nn.BatchNorm(use_running_average=not train)(x))


class BatchNormSeesPadding(BatchNormNoMask):
    batch_norm_sees_padding = True  # the explicit opt-out


class NoisyStream(nn.Module):
    """Draws from an rng stream it does not declare in ``rng_streams``."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(1)(x)
        return h + jax.random.normal(self.make_rng("noise"), h.shape) if train else h


class AttentionMaskNoBatchNorm(nn.Module):
    """A ``mask`` argument that is not a row mask; no BatchNorm, so it is never passed."""

    @nn.compact
    def __call__(self, x, mask=None):
        assert mask is None, "the row mask reached a module without BatchNorm"
        return nn.Dense(1)(x)


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
        (NNXModel(WithDropout), "take `rngs` in __call__"),
        (BatchNormNoMask(), "takes no row_mask (or mask) argument"),
        (NoisyStream(), "list the stream there"),
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


@pytest.mark.parametrize("model", [LinenDropout(), NNXModel(NNXDropout)], ids=["linen-deterministic", "nnx-rngs"])
def test_dropout_draws_from_the_step_key_in_training_and_is_off_in_inference(model):
    from jaxunlearn.models.user import model_fns
    from jaxunlearn.train.loop import supervised_loss

    fns = model_fns(model, (4,))
    params, stats = fns.init(jax.random.key(0))
    x, rows = jax.numpy.ones((6, 4)), jax.numpy.ones(6, bool)
    train = [np.asarray(fns.apply_train(params, stats, x, rows, jax.random.key(k))[0]) for k in (1, 2, 1)]
    assert not np.allclose(train[0], train[1])  # another key, other units dropped
    np.testing.assert_array_equal(train[0], train[2])  # the same key, the same draw
    evals = [np.asarray(fns.apply_eval(params, stats, x)[0]) for _ in range(2)]
    np.testing.assert_array_equal(evals[0], evals[1])
    assert not np.allclose(evals[0], train[0])  # inference runs without dropout
    # the training loss hands each step's key on to the model
    batch = {"x": x, "y": jax.numpy.zeros((6, 1)), "w": jax.numpy.ones(6)}
    loss = supervised_loss(fns, "l1")
    losses = [float(loss(params, stats, batch, jax.random.key(k), {}, None)[0]) for k in (3, 4)]
    assert losses[0] != losses[1]


def test_the_contract_reads_the_mode_mask_and_key_from_the_signature():
    from jaxunlearn.models.user import model_fns

    assert model_fns(LinenDropout(), (4,)).convention.mode == "deterministic"
    assert model_fns(PredOnly(), (4,)).convention.mode is None
    assert model_fns(NNXModel(NNXDropout), (4,)).convention.rngs
    # BatchNorm without a mask is refused; the class's explicit opt-out lets it run
    opted_out = model_fns(BatchNormSeesPadding(), (4,))
    params, stats = opted_out.init(jax.random.key(0))
    assert stats
    assert opted_out.apply_train(params, stats, jax.numpy.ones((3, 4)), jax.numpy.ones(3, bool))[0].shape == (3, 1)
    # an attention-style mask argument of a module without BatchNorm never receives the row mask
    fns = model_fns(AttentionMaskNoBatchNorm(), (4,))
    params, stats = fns.init(jax.random.key(0))
    assert fns.apply_train(params, stats, jax.numpy.ones((3, 4)), jax.numpy.ones(3, bool))[0].shape == (3, 1)


def test_an_nnx_model_with_dropout_runs_a_whole_study(tmp_path):
    cfg = with_(TINY, seeds=2, unlearners=("finetune",))
    result = run_study(
        cfg, progress=False, log=lambda m: None, task=arrays_task(), model=NNXModel(NNXDropout), checkpoint_dir=tmp_path
    )
    for row in ("original", "retrain", "finetune"):
        assert np.all(np.isfinite(result.per_seed[row]["test_forget_mae"])), row
