"""The model contract: how the library calls a model, stated once.

Every model, the zoo's and a user's, Linen or NNX, is run through two pure functions
(``jaxunlearn.train.state.ModelFns``):

- ``apply_train(params, batch_stats, x [B, ...], row_mask [B] bool, key)`` ->
  ``(pred [B, 1], feats, new batch_stats)`` (the ``TrainApply`` protocol below), and
- ``apply_eval(params, batch_stats, x [B, ...])`` -> ``(pred [B, 1], feats)``.

A module's ``__call__`` tells the adapter what it understands (``CallConvention``, read once
from its signature, never guessed per call):

- **mode**: a ``train`` argument (True in training) or a ``deterministic`` argument (False in
  training, as ``nn.Dropout`` takes it); NNX modules are also switched with ``.train()`` /
  ``.eval()``. A module with neither runs the same in both modes.
- **row mask**: a ``row_mask`` argument, or ``mask`` (the zoo's name), receives the rows that
  count [B] bool in training. Only a module with BatchNorm statistics gets it: padding rows
  of an epoch's last batch must not enter the batch statistics. A module with BatchNorm and
  no such argument is refused before anything compiles (``ModelContractError``), unless its
  class sets ``batch_norm_sees_padding = True`` to accept the bias.
- **randomness**: in training a Linen module gets ``rngs={stream: key}`` for each stream in
  its class attribute ``rng_streams`` (default ``("dropout",)``), so ``nn.Dropout`` works; an
  NNX module whose ``__call__`` takes ``rngs`` gets ``rngs=nnx.Rngs(dropout=key)``. The key is
  a stream of the step's own key (``model_key``): seeded, different each step, and never
  the key another part of the loss draws from.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Protocol

import jax

# the model's random stream within a step's key (see ``model_key``)
_MODEL_STREAM = 0x6D6F64  # "mod"


class ModelContractError(ValueError):
    """A model that does not follow the contract, refused before anything compiles."""


class TrainApply(Protocol):
    """The training-mode forward every model is run through.

    Args:
        params, batch_stats: the model's variables ({} without BatchNorm).
        x: [B, ...] inputs.
        row_mask: [B] bool, the rows that count (False: padding at weight 0).
        key: a PRNG key for the model's stochastic layers (None: a fixed key).

    Returns:
        (pred [B, 1], feats tuple, new batch_stats).
    """

    def __call__(
        self, params: Any, batch_stats: Any, x: jax.Array, row_mask: jax.Array, key: jax.Array | None
    ) -> tuple[jax.Array, tuple, Any]: ...


def model_key(step_key: jax.Array | None) -> jax.Array | None:
    """The key a model's stochastic layers get in a step: a fixed fold of the step's key,
    so a loss that draws from ``step_key`` itself keeps its numbers (None stays None)."""
    return None if step_key is None else jax.random.fold_in(step_key, _MODEL_STREAM)


@dataclasses.dataclass(frozen=True)
class CallConvention:
    """What a module's ``__call__`` understands (see the module docstring).

    Attributes:
        mode: "train", "deterministic" or None (no mode argument).
        mask: the keyword that receives the row mask ("row_mask" or "mask"), or None.
        rngs: whether ``__call__`` takes ``rngs`` (NNX: stochastic layers keyed per call).
    """

    mode: str | None
    mask: str | None
    rngs: bool

    @classmethod
    def of(cls, call: Any) -> CallConvention:
        """Reads the convention from a ``__call__`` function's signature."""
        params = inspect.signature(call).parameters
        mode = next((name for name in ("train", "deterministic") if name in params), None)
        mask = next((name for name in ("row_mask", "mask") if name in params), None)
        return cls(mode=mode, mask=mask, rngs="rngs" in params)

    def mode_kwargs(self, train: bool) -> dict:
        """The mode argument for training (``train=True``) or inference."""
        if self.mode == "train":
            return {"train": train}
        if self.mode == "deterministic":
            return {"deterministic": not train}
        return {}

    def check_batch_norm(self, owner: type, has_batch_stats: bool) -> None:
        """Refuses a module with BatchNorm statistics that cannot be told which rows count.

        Raises:
            ModelContractError: BatchNorm without a ``row_mask``/``mask`` argument and without
                ``batch_norm_sees_padding = True`` on the class.
        """
        if has_batch_stats and self.mask is None and not getattr(owner, "batch_norm_sees_padding", False):
            raise ModelContractError(
                f"model {owner.__qualname__} keeps BatchNorm statistics but its __call__ takes no row_mask "
                f"(or mask) argument, so the padding rows of an epoch's last batch would enter them: add "
                f"`row_mask: jax.Array | None = None` to __call__ and pass it on as BatchNorm's mask "
                f"(jaxunlearn.models.common.row_mask(row_mask, x.ndim) broadcasts it), or set the class "
                f"attribute `batch_norm_sees_padding = True` to accept the padding"
            )


def linen_rngs(module: Any, key: jax.Array) -> dict:
    """``rngs`` for a Linen module's training-mode apply: a key for each stream in its
    ``rng_streams`` (class attribute, default ("dropout",))."""
    streams = getattr(type(module), "rng_streams", ("dropout",))
    return {"rngs": {stream: jax.random.fold_in(key, i) for i, stream in enumerate(streams)}}
