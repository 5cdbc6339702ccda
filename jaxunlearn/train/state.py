"""Model functions and the training state pytree.

A Flax Linen module is wrapped once into pure functions (``ModelFns``); the state that
changes during training is a pytree (``TrainState``) that can be stacked over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxunlearn.train.contract import CallConvention, linen_rngs


@struct.dataclass
class TrainState:
    """Everything that changes while a model trains.

    Attributes:
        step: scalar int32, optimizer steps taken.
        params: the model's parameters.
        batch_stats: BatchNorm running statistics ({} for models without BatchNorm).
        opt_state: optimizer state (``optax.inject_hyperparams``: holds the learning rate).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    if TYPE_CHECKING:  # struct.dataclass adds it at run time; declared for type checkers only

        def replace(self, **changes: Any) -> Self: ...

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def make_optimizer() -> optax.GradientTransformation:
    """Adam whose learning rate lives in the optimizer state (an array, so a learning-rate
    sweep or a plateau schedule changes values, not the compiled program)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=0.0)


def set_learning_rate(opt_state: Any, lr: jax.typing.ArrayLike) -> Any:
    """Returns ``opt_state`` with its injected learning rate replaced by ``lr``."""
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hyper)


def get_learning_rate(opt_state: Any) -> jax.Array:
    return opt_state.hyperparams["learning_rate"]


def as_prediction_and_features(out: Any, where: str = "the model") -> tuple[jax.Array, tuple]:
    """A model's output as ``(pred [B, 1], feats)``: the library's contract, or a bare
    prediction [B, 1] (a model with no features to offer: feats = ()).

    Raises:
        ValueError: the prediction is not [B, 1].
    """
    if isinstance(out, tuple) and len(out) == 2:
        pred, feats = out
    else:
        pred, feats = out, ()
    if getattr(pred, "ndim", None) != 2 or pred.shape[1] != 1:
        raise ValueError(
            f"{where} must return predictions of shape [B, 1] (or a pair (pred [B, 1], feats)), got "
            f"{getattr(pred, 'shape', type(pred).__name__)}"
        )
    return pred, tuple(feats) if isinstance(feats, (list, tuple)) else (feats,)


@dataclasses.dataclass(frozen=True)
class ModelFns:
    """Pure functions of one Flax Linen module (a static value: closed over, never traced),
    following the model contract (``jaxunlearn.train.contract``).

    Attributes:
        module: a model following the contract: ``__call__(x, train)`` (or ``deterministic``,
            or no mode argument) returning ``(pred [B, 1], feats)`` or the prediction [B, 1]
            alone; with BatchNorm, also a ``row_mask`` (or ``mask``) argument [B] bool.
        input_shape: the shape of one input row (without the batch axis).
    """

    module: Any  # an nn.Module (``NNXModelFns``, a subclass, keeps an ``NNXModel`` here)
    input_shape: tuple[int, ...]

    @property
    def family(self) -> str:
        return getattr(self.module, "family", "dense")

    @functools.cached_property
    def convention(self) -> CallConvention:
        """What the module's ``__call__`` understands, read once from its signature."""
        return CallConvention.of(type(self.module).__call__)

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        """Fresh (params, batch_stats) for ``key``.

        Raises:
            ModelContractError: BatchNorm statistics without a row-mask argument.
        """
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        variables = self.module.init(key, x, **self.convention.mode_kwargs(False))
        batch_stats = variables.get("batch_stats", {})
        self.convention.check_batch_norm(type(self.module), bool(batch_stats))
        return variables["params"], batch_stats

    def apply_train(self, params, batch_stats, x, row_mask, key=None):
        """Training-mode forward (``contract.TrainApply``). x: [B, ...], row_mask: [B] bool
        -> (pred [B, 1], feats, new batch_stats).

        Rows outside ``row_mask`` (the padding of an epoch's last batch) are left out of
        BatchNorm's batch statistics, so they change neither the other rows' outputs nor the
        running averages. ``key`` feeds stochastic layers (None: a fixed key).
        """
        variables = {"params": params, "batch_stats": batch_stats}
        name = type(self.module).__name__
        conv = self.convention
        kwargs = {**conv.mode_kwargs(True), **linen_rngs(self.module, jax.random.key(0) if key is None else key)}
        if batch_stats:
            if conv.mask is not None:
                kwargs[conv.mask] = row_mask
            out, updates = self.module.apply(variables, x, **kwargs, mutable=["batch_stats"])
            return (*as_prediction_and_features(out, name), updates["batch_stats"])
        pred, feats = as_prediction_and_features(self.module.apply(variables, x, **kwargs), name)
        return pred, feats, batch_stats

    def apply_eval(self, params, batch_stats, x):
        """Inference-mode forward (running statistics). x: [B, ...] -> (pred [B, 1], feats)."""
        out = self.module.apply({"params": params, "batch_stats": batch_stats}, x, **self.convention.mode_kwargs(False))
        return as_prediction_and_features(out, type(self.module).__name__)

    def fresh_state(self, key: jax.Array, lr: jax.typing.ArrayLike) -> TrainState:
        """A freshly initialised model with a new Adam state at learning rate ``lr``."""
        params, batch_stats = self.init(key)
        return new_optimizer_state(TrainState(jnp.zeros((), jnp.int32), params, batch_stats, None), lr)


def finished(state: TrainState) -> TrainState:
    """What a finished stage keeps: its step count, parameters and batch statistics, without
    the optimizer state. No later stage reads it (unlearners and relearning start a fresh Adam:
    ``new_optimizer_state``), and Adam's two moments are twice the parameters: an AllCNN seed
    is 15.7 MiB with them and about 5 MiB without. Works on arrays and on
    ``jax.ShapeDtypeStruct`` trees alike. Anything else a pipeline ends with (a partial
    pipeline's intermediate result, e.g. SSD's importances) is returned as it is."""
    return state.replace(opt_state=None) if isinstance(state, TrainState) else state


def new_optimizer_state(state: TrainState, lr: jax.typing.ArrayLike) -> TrainState:
    """``state`` with a fresh Adam state (moments zero) at learning rate ``lr``.

    The unlearners fine-tune with a new optimizer, as the reference does.
    """
    opt_state = set_learning_rate(make_optimizer().init(state.params), lr)
    return state.replace(step=jnp.zeros((), jnp.int32), opt_state=opt_state)
