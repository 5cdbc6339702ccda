"""Unlearners by name (``jaxunlearn.unlearn.registry``).

Each registered ``Unlearner`` builds a ``Pipeline`` for (model, task, config, plan,
settings): a pure single-seed function ``run(key, original, task, hp) -> (state, history)``.
Importing this package registers the built-ins; a user's unlearner registers itself with
``register(Unlearner(...))`` (see the README, "Your own unlearner").
"""

from __future__ import annotations

# The built-ins, in table order (each module registers itself when imported): not sorted.
# isort: off
from jaxunlearn.unlearn import retrain, finetune, gaussian, blindspot, neggrad, scrub, ssd, sisa  # noqa: F401 (imported to register)

# isort: on
from jaxunlearn.unlearn.base import OneShot, Phase, Pipeline, fresh_start, from_original
from jaxunlearn.unlearn.blindspot import blindspot_loss, make_blindspot
from jaxunlearn.unlearn.finetune import make_finetune
from jaxunlearn.unlearn.gaussian import gaussian_relabel, make_gaussian
from jaxunlearn.unlearn.neggrad import make_neggrad
from jaxunlearn.unlearn.registry import (
    EPOCHS_RANGE,
    LR_RANGE,
    PluginError,
    Range,
    Unlearner,
    all_stages,
    default_unlearners,
    get,
    load_plugin,
    names,
    reference_stages,
    register,
    require_positive,
    unregister,
)
from jaxunlearn.unlearn.retrain import make_original, make_retrain, recipe_fit
from jaxunlearn.unlearn.scrub import make_scrub
from jaxunlearn.unlearn.ssd import make_lfssd, make_ssd

__all__ = [
    "EPOCHS_RANGE",
    "LR_RANGE",
    "OneShot",
    "Phase",
    "Pipeline",
    "PluginError",
    "Range",
    "Unlearner",
    "all_stages",
    "blindspot_loss",
    "default_unlearners",
    "fresh_start",
    "from_original",
    "gaussian_relabel",
    "get",
    "load_plugin",
    "make_blindspot",
    "make_finetune",
    "make_gaussian",
    "make_lfssd",
    "make_neggrad",
    "make_original",
    "make_retrain",
    "make_scrub",
    "make_ssd",
    "names",
    "recipe_fit",
    "reference_stages",
    "register",
    "require_positive",
    "unregister",
]
