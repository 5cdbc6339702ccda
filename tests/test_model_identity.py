"""A user's model and plug-in code are part of the checkpoint identity (jaxunlearn.identity).

Editing a model's source (relu -> gelu), a helper it calls, or a plug-in unlearner's factory
changes the checkpoint keys, so the study retrains instead of reusing stale weights; the
same code and values give the same keys in a fresh process; array fields are hashed in full;
values that cannot name a model (a memory address or an abbreviated repr in theirs) are
refused with a message that says what to give instead.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import unlearn
from jaxunlearn.checkpoints import CheckpointStore
from jaxunlearn.identity import IdentityError, code_name, describe_value
from jaxunlearn.models.user import NNXModel, describe_model
from jaxunlearn.study import run_study
from tests.helpers import TINY, with_
from tests.test_own_model import arrays_task

REPO = Path(__file__).resolve().parent.parent

# A user's model file; {act} and {helper_act} are edited between "versions" of it.
MODEL_SOURCE = """
import flax.linen as nn
import jax.numpy as jnp
from typing import Any

WIDTH = {width}


def block(x):
    return nn.{helper_act}(nn.Dense(WIDTH)(x))


class Net(nn.Module):
    hidden: int = 8
    w: Any = None

    @nn.compact
    def __call__(self, x):
        h = nn.{act}(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(block(h))


def make_net():
    return Net(hidden=8, w=jnp.arange(5000.0))
"""


def write_model(folder: Path, act: str = "relu", helper_act: str = "relu", width: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "user_net.py"
    path.write_text(MODEL_SOURCE.format(act=act, helper_act=helper_act, width=width))
    return path


def import_as(path: Path, name: str, monkeypatch):
    """Imports ``path`` as module ``name`` (replacing an earlier version of it, as a user who
    edits a file and reloads it would), restored after the test."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def key(model, row: str = "original") -> str:
    name, fields = describe_model(model)
    return CheckpointStore("/nonexistent", with_(TINY, model=name, model_kwargs=fields), "f" * 64).key(row)


def model_key(path: Path, monkeypatch, **fields) -> str:
    return key(import_as(path, "user_net", monkeypatch).Net(**fields))


# ---------------------------------------------------------------------------- (a) the model's code


def test_editing_the_models_source_changes_its_key_and_the_same_source_keeps_it(tmp_path, monkeypatch):
    relu = model_key(write_model(tmp_path / "v1"), monkeypatch)
    assert model_key(write_model(tmp_path / "v2", act="gelu"), monkeypatch) != relu  # relu -> gelu
    assert model_key(write_model(tmp_path / "v3"), monkeypatch) == relu  # the same source elsewhere: reused


def test_editing_a_helper_or_constant_the_model_uses_changes_its_key(tmp_path, monkeypatch):
    relu = model_key(write_model(tmp_path / "v1"), monkeypatch)
    assert model_key(write_model(tmp_path / "v2", helper_act="gelu"), monkeypatch) != relu  # block(): relu -> gelu
    assert model_key(write_model(tmp_path / "v3", width=5), monkeypatch) != relu  # WIDTH = 5


def test_a_model_without_readable_source_is_identified_by_its_compiled_code(monkeypatch):
    """A class defined in a notebook has no source file: its methods' compiled code names it."""

    def notebook_net(act: str):
        module = types.ModuleType("notebook_cell")  # no __file__, like a notebook's __main__
        monkeypatch.setitem(sys.modules, "notebook_cell", module)
        exec(compile(MODEL_SOURCE.format(act=act, helper_act="relu", width=4), "<cell>", "exec"), vars(module))
        return module.Net()

    with pytest.raises(TypeError):
        inspect.getsource(type(notebook_net("relu")))
    assert key(notebook_net("relu")) == key(notebook_net("relu"))
    assert key(notebook_net("relu")) != key(notebook_net("gelu"))


def test_a_changed_model_retrains_the_original_and_retrained_models(tmp_path, monkeypatch):
    cfg = with_(TINY, seeds=2, train_epochs=2, unlearners=())
    runs = {}
    for version, act in (("relu", "relu"), ("gelu", "gelu")):
        logs: list[str] = []
        net = import_as(write_model(tmp_path / version, act=act), "user_net", monkeypatch).Net()
        run_study(cfg, progress=False, log=logs.append, task=arrays_task(), model=net, checkpoint_dir=tmp_path / "ckpt")
        runs[version] = logs
    assert not [m for m in runs["gelu"] if "loaded from" in m], runs["gelu"]  # nothing stale reused
    assert len(list((tmp_path / "ckpt").glob("original-*"))) == 2


def test_resume_refuses_checkpoints_of_another_version_of_the_model(tmp_path, monkeypatch):
    def store(act: str) -> CheckpointStore:
        name, fields = describe_model(import_as(write_model(tmp_path / act, act=act), "user_net", monkeypatch).Net())
        return CheckpointStore(tmp_path / "ckpt", with_(TINY, model=name, model_kwargs=fields), "f" * 64)

    store("relu").begin(resume=False)
    with pytest.raises(ValueError, match=r"another configuration; it differs in model: 'user_net.Net \[code "):
        store("gelu").begin(resume=True)


# ---------------------------------------------------------------------------- (b) array fields


def test_array_fields_are_identified_by_all_their_bytes(tmp_path, monkeypatch):
    net = import_as(write_model(tmp_path / "v1"), "user_net", monkeypatch).Net
    weights = np.linspace(0.0, 1.0, 5000, dtype=np.float32)
    one_changed = weights.copy()
    one_changed[2500] += 1e-3  # repr(one_changed) == repr(weights): numpy summarises both with "..."
    assert repr(one_changed) == repr(weights)
    assert key(net(w=weights)) == key(net(w=weights.copy()))
    assert key(net(w=weights)) != key(net(w=one_changed))
    assert key(net(w=weights)) == key(net(w=jnp.asarray(weights)))  # NumPy or JAX: the same values
    assert key(net(w=weights)) != key(net(w=weights.astype(np.float64)))  # dtype and shape count
    assert key(net(w=weights)) != key(net(w=weights.reshape(50, 100)))
    assert key(NNXModel(net, w=weights)) != key(NNXModel(net, w=one_changed))  # NNX constructor arguments too


# ---------------------------------------------------------------------------- (c) a fresh process


def test_the_same_model_has_the_same_key_in_a_fresh_process(tmp_path, monkeypatch):
    """Reuse across processes: nothing in the key depends on memory addresses or on the
    string hashing that PYTHONHASHSEED randomises."""
    path = write_model(tmp_path / "v1")
    script = textwrap.dedent(
        f"""
        import functools, importlib.util, json, sys
        import flax.linen as nn
        sys.path.insert(0, {str(REPO)!r})
        from tests.test_model_identity import key
        spec = importlib.util.spec_from_file_location("user_net", {str(path)!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["user_net"] = module
        spec.loader.exec_module(module)
        print(json.dumps(key(module.Net(w={{"net": module.make_net(), "act": functools.partial(nn.leaky_relu,
              negative_slope=0.2), "set": frozenset({{"a", "b", "c"}}), "block": module.block}}))))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    module = import_as(path, "user_net", monkeypatch)
    fields = {
        "net": module.make_net(),
        "act": functools.partial(nn.leaky_relu, negative_slope=0.2),
        "set": frozenset({"a", "b", "c"}),
        "block": module.block,
    }
    assert json.loads(out.stdout.strip().splitlines()[-1]) == key(module.Net(w=fields))


# ---------------------------------------------------------------------------- (d) values without a name


class Opaque:
    """An object with the default repr: ``<...Opaque object at 0x7f...>``."""


class Summarised:
    """A numpy-like object whose repr leaves elements out."""

    def __repr__(self):
        return "Tensor([0., 0., 0., ..., 0., 0., 0.])"


class Named:
    """The way out the error gives: a __repr__ that says what defines the object."""

    def __init__(self, alpha):
        self.alpha = alpha

    def __repr__(self):
        return f"Named(alpha={self.alpha})"


def test_a_value_whose_repr_holds_a_memory_address_is_refused_with_the_way_out(tmp_path, monkeypatch):
    net = import_as(write_model(tmp_path / "v1"), "user_net", monkeypatch).Net
    with pytest.raises(IdentityError) as info:
        describe_model(net(w=Opaque()))
    message = str(info.value)
    assert re.match(
        r"model Net, field 'w': <[\w.]*Opaque object at 0x[0-9a-f]+> cannot be part of a checkpoint key", message
    )
    assert "its repr holds a memory address" in message
    assert "give Opaque a __repr__ that names everything that defines it" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(IdentityError, match=r"model Net, argument 'w'\['inner'\]: .* memory address"):
        describe_model(NNXModel(net, w={"inner": Opaque()}))
    assert key(net(w=Named(0.1))) != key(net(w=Named(0.2)))  # the way out works


def test_an_abbreviated_repr_is_refused_with_the_way_out():
    with pytest.raises(IdentityError) as info:
        describe_value(Summarised(), "model Net, field 'w'")
    assert "its repr is abbreviated ('...')" in str(info.value)
    assert "Give it as a NumPy or JAX array" in str(info.value)


def test_functions_are_named_by_their_code_and_partials_without_addresses():
    first, second = (lambda x: x), (lambda x: x + 1)  # two lambdas on one line
    assert describe_value(first, "f") != describe_value(second, "f")
    assert describe_value(first, "f") == describe_value(first, "f")

    def scaled(alpha):
        return lambda x: alpha * x

    assert describe_value(scaled(0.1), "f") != describe_value(scaled(0.2), "f")  # what a closure holds counts
    partial = functools.partial(nn.leaky_relu, negative_slope=0.2)
    described = describe_value(partial, "f")
    assert described == describe_value(functools.partial(nn.leaky_relu, negative_slope=0.2), "f")
    assert described != describe_value(functools.partial(nn.leaky_relu, negative_slope=0.3), "f")
    assert described == ("functools.partial", "jax._src.nn.functions.leaky_relu", (), (("negative_slope", 0.2),))
    assert "0x" not in json.dumps(describe_value(functools.partial(scaled(0.1), 3), "f"))
    assert describe_value(nn.relu, "f") == "jax._src.nn.functions.relu"  # library functions: by name only
    assert code_name(Named).startswith(f"{__name__}.Named [code ")


# ---------------------------------------------------------------------------- plug-in unlearners

PLUGIN_SOURCE = """
from jaxunlearn.unlearn import Unlearner, register
from jaxunlearn.unlearn.finetune import make_finetune, FinetuneSettings


def make_idtest(model, task, cfg, plan, settings):
    return make_finetune(model, task, cfg, plan, settings)  # {comment}


register(Unlearner("idtest", make_idtest, hp={{"lr": 1e-3}}, settings=FinetuneSettings))
"""


def plugin_keys(folder: Path, comment: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "idplugin.py"
    path.write_text(PLUGIN_SOURCE.format(comment=comment))
    unlearn.load_plugin(str(path))
    try:
        store = CheckpointStore("/nonexistent", with_(TINY, unlearners=("idtest",)), "f" * 64)
        return {row: store.key(row) for row in store.rows}
    finally:
        unlearn.unregister("idtest")


def test_a_plugins_factory_source_is_part_of_its_rows_keys_only(tmp_path):
    first = plugin_keys(tmp_path / "v1", "first")
    edited = plugin_keys(tmp_path / "v2", "edited")
    assert edited["idtest"] != first["idtest"]  # the edited plug-in's rows retrain...
    assert edited["original"] == first["original"] and edited["retrain"] == first["retrain"]  # ...nothing else
    assert plugin_keys(tmp_path / "v3", "first") == first  # the same file elsewhere: reused


def test_the_librarys_own_unlearners_add_nothing_to_their_keys():
    assert [u.name for u in unlearn.all_stages() if u.code_identity() is not None] == []
    store = CheckpointStore("/nonexistent", TINY, "f" * 64)
    assert all("code" not in store.settings(row) for row in store.rows)


def test_a_plugin_factory_made_by_partial_is_identified_by_its_arguments():
    from jaxunlearn.unlearn.finetune import make_finetune

    def factory(model, task, cfg, plan, settings, scale):
        return make_finetune(model, task, cfg, plan, settings)

    def code(scale):
        made = unlearn.Unlearner("idpartial", functools.partial(factory, scale=scale), {"lr": 1e-3}, settings=None)
        return made.code_identity()

    assert code(1.0) != code(2.0) and code(1.0) == code(1.0)
