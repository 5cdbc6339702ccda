"""A user's own model in a study: a Flax Linen module, or an NNX module class.

``run_study(cfg, model=...)`` takes either:

- a Linen module instance, e.g. ``MyNet(hidden=32)``, whose ``__call__(x, train=False)``
  returns ``(pred [B, 1], feats)`` (the zoo's contract; ``feats``, the activations an
  attention-transfer loss compares, may be ``()``) or the prediction [B, 1] alone;
- ``NNXModel(MyNNXNet, din=8, hidden=32)``: an NNX module class and its constructor's
  arguments; it is built as ``MyNNXNet(**kwargs, rngs=nnx.Rngs(key))`` once per seed and run
  through NNX's functional split/merge, so the unlearners see plain pytrees (parameters
  and BatchNorm statistics as nested dicts).

Mode arguments (``train`` or ``deterministic``), the BatchNorm row mask (``row_mask`` or
``mask``) and Dropout's key follow one contract: ``jaxunlearn.train.contract``.

A model's identity (``describe_model``) stands for it in the study's configuration, so
checkpoint keys change when the model does: its class's module and qualified name with a
digest of the class's source (and of the user's code it uses), and its fields or
constructor arguments as stable values (``jaxunlearn.identity``: arrays by a SHA-256 of
their bytes, the user's functions by their source; a value whose repr holds a memory
address or is abbreviated is refused).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax

from jaxunlearn.identity import code_name, describe_value
from jaxunlearn.train.contract import CallConvention, ModelContractError
from jaxunlearn.train.state import ModelFns, as_prediction_and_features


@dataclasses.dataclass(frozen=True)
class NNXModel:
    """An NNX module class and its constructor's keyword arguments (not ``rngs``).

    Attributes:
        cls: an ``nnx.Module`` subclass whose ``__call__(x)`` returns ``(pred [B, 1],
            feats)`` or the prediction alone; with BatchNorm it takes ``row_mask`` or
            ``mask`` [B] (rows that count in the batch statistics); it may take ``rngs``
            (Dropout's key in training). Train/eval mode is set with ``.train()`` /
            ``.eval()``. Its state must be parameters and BatchNorm statistics only
            (no stored ``Rngs``: build ``nnx.Dropout(rate)`` without them).
        kwargs: constructor arguments as (name, value) pairs (hashable).
    """

    cls: type
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __init__(self, cls: type, /, **kwargs: Any):
        object.__setattr__(self, "cls", cls)
        object.__setattr__(self, "kwargs", tuple(sorted(kwargs.items())))

    def build(self, key: jax.Array):
        from flax import nnx

        return self.cls(**dict(self.kwargs), rngs=nnx.Rngs(key))


@dataclasses.dataclass(frozen=True)
class NNXModelFns(ModelFns):
    """``ModelFns`` of an ``NNXModel`` (``module`` holds the NNXModel)."""

    @property
    def family(self) -> str:
        return getattr(self.module.cls, "family", "dense")

    @functools.cached_property
    def convention(self) -> CallConvention:
        return CallConvention.of(self.module.cls.__call__)

    def _template(self):
        """(graphdef, abstract parameter state, abstract BatchNorm state) of the model."""
        from flax import nnx

        abstract = nnx.eval_shape(lambda: self.module.build(jax.random.key(0)))
        graphdef, *states = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
        params, stats, rest = states
        if jax.tree_util.tree_leaves(rest):
            raise ModelContractError(
                f"NNX model {self.module.cls.__qualname__} holds state other than parameters and BatchNorm "
                f"statistics ({sorted(nnx.to_pure_dict(rest))}), e.g. an nnx.Dropout built with rngs: build "
                f"stochastic layers without rngs (nnx.Dropout(rate)) and take `rngs` in __call__, passing it "
                f"on (self.drop(h, rngs=rngs)); in training jaxunlearn calls the model with "
                f"rngs=nnx.Rngs(dropout=key), a new key every step"
            )
        return graphdef, params, stats

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        from flax import nnx

        self._template()  # refuses unsupported state with its reason
        _, *states = nnx.split(self.module.build(key), nnx.Param, nnx.BatchStat, ...)
        params, stats, _ = states
        has_stats = bool(jax.tree_util.tree_leaves(stats))
        self.convention.check_batch_norm(self.module.cls, has_stats)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(stats) if has_stats else {}

    def _merge(self, params, batch_stats, train: bool):
        from flax import nnx

        graphdef, p_state, s_state = self._template()
        nnx.replace_by_pure_dict(p_state, params)
        if batch_stats:
            nnx.replace_by_pure_dict(s_state, batch_stats)
        module = nnx.merge(graphdef, p_state, s_state, copy=True)
        module.train() if train else module.eval()
        return module

    def _call(self, module, x, train: bool, row_mask=None, key=None):
        from flax import nnx

        conv = self.convention
        kwargs = conv.mode_kwargs(train)
        if train and conv.mask is not None and row_mask is not None:
            kwargs[conv.mask] = row_mask
        if train and conv.rngs:
            kwargs["rngs"] = nnx.Rngs(dropout=jax.random.key(0) if key is None else key)
        return as_prediction_and_features(module(x, **kwargs), self.module.cls.__qualname__)

    def apply_train(self, params, batch_stats, x, row_mask, key=None):
        from flax import nnx

        module = self._merge(params, batch_stats, train=True)
        pred, feats = self._call(module, x, True, row_mask if batch_stats else None, key)
        if not batch_stats:
            return pred, feats, batch_stats
        return pred, feats, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))

    def apply_eval(self, params, batch_stats, x):
        return self._call(self._merge(params, batch_stats, train=False), x, False)


def model_fns(model: Any, input_shape: tuple[int, ...]) -> ModelFns:
    """The ``ModelFns`` of a user's model: a Linen module instance or an ``NNXModel``.

    Raises:
        ValueError: anything else (e.g. an NNX module instance: pass its class in an
            ``NNXModel`` so that each seed builds its own).
    """
    _check_kind(model)
    return (
        NNXModelFns(model, tuple(input_shape)) if isinstance(model, NNXModel) else ModelFns(model, tuple(input_shape))
    )


def _check_kind(model: Any) -> None:
    if not isinstance(model, (NNXModel, nn.Module)):
        raise ValueError(
            f"model must be a Flax Linen module instance or NNXModel(NnxClass, **kwargs), got "
            f"{type(model).__name__} (an NNX module instance: give NNXModel(type(m), **its arguments))"
        )


def describe_model(model: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """What defines a user's model, as values that are the same in every process
    (``jaxunlearn.identity``).

    Returns:
        (name, fields): the class's module and qualified name, followed by `` [code
        DIGEST]``, a digest of its source and of the user's code it uses (``code_name``),
        for any class but jaxunlearn's own; and its fields (Linen) or constructor arguments
        (NNX) as sorted (name, ``describe_value``) pairs.

    Raises:
        ValueError: not a Linen module instance or ``NNXModel``.
        IdentityError: a field's value cannot name the model (its repr holds a memory
            address or is abbreviated); the message says what to give instead.
    """
    _check_kind(model)
    if isinstance(model, NNXModel):
        cls, fields, kind = model.cls, dict(model.kwargs), "argument"
    else:
        cls, kind = type(model), "field"
        fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in ("parent", "name")}
    described = tuple(
        (k, describe_value(v, f"model {cls.__qualname__}, {kind} {k!r}")) for k, v in sorted(fields.items())
    )
    return code_name(cls, root=True), described
