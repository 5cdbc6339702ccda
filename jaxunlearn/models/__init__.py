"""Model zoo: regressors returning ``(pred [B, 1] float32, feats tuple)``.

Every model is a Flax Linen module with ``__call__(x, train=False)``, a
``dtype`` compute-dtype field (parameters stay float32) and a ``family``
class attribute ("conv", "dense" or "recurrent"). A model with BatchNorm (a
'batch_stats' collection) also takes ``mask`` [B] bool in training mode: only the
rows where it is True enter the batch statistics (padding rows of a last batch do not).
The contract every model follows, the zoo's and a user's: ``jaxunlearn.train.contract``.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from jaxunlearn.models.allcnn import AllCNN
from jaxunlearn.models.lstm import LSTMRegressor
from jaxunlearn.models.mlp import MLP
from jaxunlearn.models.resnet import BasicBlock, ResNet18

# (The annotation names the zoo's classes, so type checkers know their ``family``.)
MODELS: dict[str, type[MLP | AllCNN | ResNet18 | LSTMRegressor]] = {
    "mlp": MLP,
    "allcnn": AllCNN,
    "resnet18": ResNet18,
    "lstm": LSTMRegressor,
}


def _model_class(name: str) -> type[MLP | AllCNN | ResNet18 | LSTMRegressor]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None


def model_fields(name: str) -> tuple[str, ...]:
    """Returns the configurable fields of model ``name`` (e.g. ``('hidden', 'dtype')``)."""
    cls = _model_class(name)
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name"))


def make_model(name: str, /, **kwargs) -> nn.Module:
    """Builds the registered model ``name`` with field overrides ``kwargs``.

    Args:
        name: A key of ``MODELS``.
        **kwargs: Module fields, e.g. ``width=32`` or ``dtype=jnp.bfloat16``.

    Returns:
        An unbound Flax module.

    Raises:
        ValueError: For an unknown name or a keyword that is not a field.
    """
    cls = _model_class(name)
    fields = model_fields(name)
    bad = sorted(set(kwargs) - set(fields))
    if bad:
        raise ValueError(f"model {name!r} got unknown argument(s) {bad}; accepted fields: {list(fields)}")
    return cls(**kwargs)


def model_family(name: str) -> str:
    """Returns the family ("conv", "dense" or "recurrent") of model ``name``."""
    return _model_class(name).family


__all__ = [
    "MLP",
    "MODELS",
    "AllCNN",
    "BasicBlock",
    "LSTMRegressor",
    "ResNet18",
    "make_model",
    "model_family",
    "model_fields",
]
