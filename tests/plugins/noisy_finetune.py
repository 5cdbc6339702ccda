"""An unlearner defined outside the package, as a user would write one (one file).

"noisy_finetune": perturb the original's weights with Gaussian noise of scale ``noise``
times each weight's own magnitude, then fine-tune on the retain rows. The tests load it as
a plugin (``--plugin tests/plugins/noisy_finetune.py``) and run it everywhere a built-in
runs: the CLI with a sweep and ``--resume``, the claims table and the conformance suite.
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxunlearn.train.loop import Fit, FitConfig, supervised_loss
from jaxunlearn.unlearn import Phase, Pipeline, Unlearner, from_original, register, require_positive


@dataclasses.dataclass(frozen=True)
class NoisySettings:
    epochs: int = 2  # fine-tuning epochs after the noise

    def __post_init__(self):
        require_positive(self, "epochs")


def make_noisy_finetune(model, task, cfg, plan, settings: NoisySettings) -> Pipeline:
    base = from_original()

    def start(key, original, task, hp, earlier):
        state, _ = base(key, original, task, hp, earlier)
        leaves, tree = jax.tree_util.tree_flatten(state.params)
        keys = jax.random.split(key, len(leaves))
        noisy = [
            p + hp["noise"] * jnp.abs(p) * jax.random.normal(k, p.shape, p.dtype)
            for p, k in zip(leaves, keys, strict=True)
        ]
        return state.replace(params=jax.tree_util.tree_unflatten(tree, noisy)), None

    fit_cfg = FitConfig(
        epochs=settings.epochs, batch_size=cfg.batch_size, rows="retain", loss=cfg.loss, augment_pad=cfg.augment_pad
    )
    fit = Fit(model, fit_cfg, supervised_loss(model, cfg.loss), task, plan)
    return Pipeline("noisy_finetune", (Phase("noise+fine-tune", start, fit),), {"lr": 1e-3, "noise": 0.1})


NOISY_FINETUNE = register(
    Unlearner(
        "noisy_finetune",
        make_noisy_finetune,
        hp={"lr": 1e-3, "noise": 0.1},
        hp_bounds={"noise": (0.0, 10.0)},
        settings=NoisySettings,
        description="noise on the weights, then fine-tuning (a test plugin)",
    )
)
