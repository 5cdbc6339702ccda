"""Small shared fixtures for the tests: a tiny task, model and config."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.forget_rules import Mask
from jaxunlearn.data.sources import RawData, build_task, make_synthetic
from jaxunlearn.models import make_model
from jaxunlearn.models.common import row_mask
from jaxunlearn.train.state import ModelFns

TINY = StudyConfig(
    dataset="synthetic",
    model="mlp",
    model_kwargs=(("hidden", (16, 16)),),
    seeds=3,
    batch_size=32,
    train_epochs=3,
    settings={"finetune": {"epochs": 2}, "blindspot": {"proxy_epochs": 1, "epochs": 2}},
    relearn_max_epochs=2,
    mia_samples=50,
)


def tiny_task(n: int = 240):
    return build_task(make_synthetic(n=n, dim=4))


def tiny_model(task, name: str = "mlp", **kwargs) -> ModelFns:
    kwargs = kwargs or {"hidden": (16, 16)}
    return ModelFns(make_model(name, **kwargs), task.input_shape)


def tiny_image_task(n: int = 96, size: int = 8, seed: int = 0):
    """Random 8x8x3 images whose target is the mean brightness; bright images are forgotten."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, size, size, 3)).astype(np.float32)
    y = x.mean(axis=(1, 2, 3)) * 10
    cut1, cut2 = n // 2, 3 * n // 4
    bounds = {"train": (0, cut1), "val": (cut1, cut2), "test": (cut2, n)}
    splits = {k: (x[a:b], y[a:b]) for k, (a, b) in bounds.items()}
    rule = Mask({k: y[a:b] > 0.5 for k, (a, b) in bounds.items()})
    return build_task(RawData(splits, rule, "tiny images"))


class TinyConvBN(nn.Module):
    """Two Conv-BatchNorm-ReLU blocks (the second with stride 2), mean pool, Dense(1).

    A conv net with BatchNorm, the padding-row mask and attention features of two sizes, like
    AllCNN's eight blocks, at a fraction of its XLA:CPU compile time: for tests of what
    BatchNorm changes in an unlearner (AllCNN itself is tested in test_models.py).
    """

    family: ClassVar[str] = "conv"
    width: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None):
        """x [B, H, W, C] -> (pred [B, 1], (block outputs [B, H, W, w], [B, H/2, W/2, w]))."""
        bn_mask = row_mask(mask, x.ndim)
        h, feats = x, []
        for stride in (1, 2):
            h = nn.Conv(self.width, (3, 3), strides=(stride, stride), use_bias=False)(h)
            h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h, mask=bn_mask))
            feats.append(h)
        return nn.Dense(1)(jnp.mean(h, axis=(1, 2))), tuple(feats)


def tiny_conv_model(task) -> ModelFns:
    return ModelFns(TinyConvBN(), task.input_shape)


def with_(cfg: StudyConfig, **changes) -> StudyConfig:
    return dataclasses.replace(cfg, **changes)


# The smallest `jaxunlearn run` the command-line tests share (each adds its own options).
TINY_RUN_ARGS = ["run", "--dataset", "synthetic", "--model-arg", "hidden=16,16", "--seeds", "2", "--epochs", "2"]


def build(name: str, model: ModelFns, task, cfg: StudyConfig, plan, **settings):
    """The registered stage ``name``'s pipeline, with ``cfg``'s settings for it and then
    ``settings`` (field=value) over them."""
    from jaxunlearn import unlearn

    stage = unlearn.get(name)
    return stage.build(model, task, cfg, plan, stage.resolve_settings({**cfg.settings_of(name), **settings}))


def train_original(model: ModelFns, task, plan, cfg: StudyConfig = TINY):
    """The original model trained over ``cfg.seeds`` seeds (a StageResult, states [S, ...])."""
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.study import seed_keys
    from jaxunlearn.unlearn import make_original

    return PipelineRunner(make_original(model, task, cfg, plan), plan)(
        seed_keys(cfg.seed, cfg.seeds, "original"), None, task, progress=False
    )


def plugin_unlearners(spec: str) -> list:
    """The ``Unlearner`` records a plugin module (name or .py path) defines, registered or not."""
    from jaxunlearn import unlearn

    with registered([]):  # loading registers them: undone on leaving
        module = unlearn.load_plugin(spec)
    return [
        v for v in vars(module).values() if isinstance(v, unlearn.Unlearner) and v.make.__module__ == module.__name__
    ]


@contextlib.contextmanager
def registered(unlearners: list):
    """Registers ``unlearners`` for the duration of the block, and puts the registry back
    as it was on leaving (also whatever the block registered), so tests elsewhere see only
    the built-ins."""
    from jaxunlearn.unlearn import registry

    saved = dict(registry._REGISTRY)
    try:
        for u in unlearners:
            registry.register(u, replace=True)
        yield
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


def one_seed_setup(plan, train_epochs: int = 5):
    """(tiny task, its MLP, original states [1, ...] trained ``train_epochs`` epochs under
    ``plan``): what the unlearners' own unit tests start from."""
    task = tiny_task()
    model = tiny_model(task)
    return task, model, train_original(model, task, plan, with_(TINY, seeds=1, train_epochs=train_epochs)).state


def cached_child_env(**extra: str) -> dict:
    """The environment for a ``jaxunlearn`` process a test starts: this one's (which names the
    tests' persistent XLA cache in JAXUNLEARN_CACHE_DIR, conftest.py), caching every program
    however quick its compile, so programs compiled by the test process or an earlier child
    are not compiled again."""
    root = str(Path(__file__).resolve().parent.parent)
    return dict(
        os.environ,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        **extra,
    )
