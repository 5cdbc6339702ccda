"""The unlearner registry: definitions are validated before anything compiles, plugins load
from a file, a module name or a packaging entry point, and the built-ins keep their ids."""

from __future__ import annotations

import dataclasses
from importlib.metadata import EntryPoint

import pytest

from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.unlearn import PluginError, Unlearner, registry
from tests.helpers import registered

PLUGIN = "tests/plugins/noisy_finetune.py"


def make(model, task, cfg, plan, settings):
    raise AssertionError("never built in these tests")


@dataclasses.dataclass(frozen=True)
class Settings:
    epochs: int = 1


def test_every_built_in_is_defined_in_one_module_and_named_after_it():
    for stage in unlearn.all_stages():
        assert stage.make.__module__.startswith("jaxunlearn.unlearn."), stage.name
    assert unlearn.default_unlearners() == ("finetune", "gaussian", "blindspot")
    assert unlearn.reference_stages() == ("original", "retrain")
    assert StudyConfig().unlearners == unlearn.default_unlearners()


@pytest.mark.parametrize(
    "bad, message",
    [
        (Unlearner("2bad", make, {"lr": 1e-3}), "must be letters, digits and '_'"),
        (Unlearner("x", lambda model, task: None, {"lr": 1e-3}), "make must take (model, task, cfg, plan, settings)"),
        (Unlearner("x", make, {"lr": None}), "hyperparameter 'lr' needs a finite float default, got None"),
        (Unlearner("x", make, {"lr": float("nan")}), "needs a finite float default"),
        (Unlearner("x", make, {"lr": 1e-3}, hp_bounds={"beta": (0, 1)}), "bounds for 'beta', which is not"),
        (Unlearner("x", make, {"beta": 5.0}, hp_bounds={"beta": (0, 1)}), "must be (low, high) around its default"),
        (Unlearner("x", make, {"lr": 1e-3}, settings=dict), "settings must be a dataclass"),
        (
            Unlearner("x", make, {"lr": 1e-3}, settings=dataclasses.make_dataclass("S", [("epochs", int)])),
            "settings field(s) ['epochs'] have no default",
        ),
        (Unlearner("scrub", make, {"lr": 1e-3}), "unlearner name 'scrub' is already registered"),
        (Unlearner("x", make, {"lr": 1e-3}, key_id=6), "key id 6 is already used by 'scrub'"),
    ],
)
def test_bad_definitions_are_rejected_with_what_is_wrong(bad, message):
    with registered([]), pytest.raises(PluginError) as info:
        unlearn.register(bad, source="my_plugin")
    assert message in str(info.value) and "my_plugin" in str(info.value)


def test_derived_key_ids_are_stable_and_above_the_reserved_range():
    a = Unlearner("mine", make, {"lr": 1e-3})
    assert a.key_id == Unlearner("mine", make, {"lr": 1e-3}).key_id == registry.derived_key_id("mine")
    assert a.key_id >= registry.RESERVED_KEY_IDS and a.key_id != Unlearner("yours", make, {}).key_id


def test_settings_are_typed_validated_and_set_generically():
    with registered([Unlearner("mine", make, {"lr": 1e-3}, settings=Settings)]):
        cfg = StudyConfig(unlearners=("mine",), settings={"mine.epochs": 4})
        assert cfg.resolved_settings("mine") == Settings(epochs=4)
        assert StudyConfig(settings={"mine": {"epochs": 2}}).settings == (("mine", (("epochs", 2),)),)
        with pytest.raises(ValueError, match=r"mine.epochs must be int, got 'two'"):
            StudyConfig(settings={"mine.epochs": "two"})
        with pytest.raises(ValueError, match=r"mine has no setting\(s\) \['epoch'\]"):
            StudyConfig(settings={"mine.epoch": 2})
        assert unlearn.registry.alias_fields()["mine_epochs"] == ("mine", "epochs")
    with pytest.raises(ValueError, match="unknown unlearner 'mine'"):
        StudyConfig(settings={"mine.epochs": 4})


def test_a_plugin_file_registers_again_when_loaded_again():
    with registered([]):
        module = unlearn.load_plugin(PLUGIN)
        assert "noisy_finetune" in unlearn.names()
        unlearn.unregister("noisy_finetune")
        assert unlearn.load_plugin(PLUGIN) is module  # imported once, registered again
        assert "noisy_finetune" in unlearn.names()
    assert "noisy_finetune" not in unlearn.names()


def test_entry_points_register_modules_and_records(monkeypatch):
    from importlib import metadata

    points = [EntryPoint("noisy", "tests.plugins.noisy_finetune", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(metadata, "entry_points", lambda group: points if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with registered([]):
        assert "noisy_finetune" in unlearn.names()  # listing the registry loads the entry points
    broken = [EntryPoint("broken", "no_such_module_xyz", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(metadata, "entry_points", lambda group: broken)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with registered([]), pytest.raises(PluginError, match=r"entry point 'broken' \(no_such_module_xyz\): cannot be"):
        unlearn.names()


def test_each_unlearner_is_named_in_its_own_module_and_the_import_line_only():
    """What is specific to an unlearner lives in its module: outside it, only the line
    that imports the built-ins names it (``git grep -lw NAME jaxunlearn/``, in Python)."""
    import re
    from pathlib import Path

    package = Path(unlearn.__file__).resolve().parent.parent
    sources = {p: p.read_text() for p in package.rglob("*.py")}
    for stage in unlearn.all_stages():
        if stage.reference:
            continue
        pattern = re.compile(rf"(?<![A-Za-z0-9_]){stage.name}(?![A-Za-z0-9_])")
        naming = sorted(str(p.relative_to(package)) for p, text in sources.items() if pattern.search(text))
        assert set(naming) <= {"unlearn/__init__.py", f"unlearn/{stage.make.__module__.rsplit('.', 1)[1]}.py"}, (
            stage.name,
            naming,
        )
