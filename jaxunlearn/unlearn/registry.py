"""The unlearner registry: every stage a study can run, built-in or a user's, by name.

An unlearner is one ``Unlearner`` record, registered with one call::

    register(Unlearner(name="mine", make=make_mine, hp={"lr": 1e-3}, settings=MineSettings))

Everything else (the study, its configuration and command line, checkpoints, sweeps,
reports and the conformance tests) reads what it needs from here: the float
hyperparameters and their bounds (``--hp``/``--sweep``), the static settings
(``--set NAME.FIELD=VALUE`` or a ``[NAME]`` table in a config file), the key id folded
into each seed's key, and the factory.

Third-party packages register through the entry-point group ``jaxunlearn.unlearners``
(each entry point names a module to import, or an ``Unlearner`` to register); the CLI
imports a user's module with ``--plugin`` (``load_plugin``). A bad plugin is rejected
before anything compiles, with a ``PluginError`` naming the plugin and what is wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import math
import sys
import types
import typing
import zlib
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from jaxunlearn.identity import code_name, describe_value, is_library_module

ENTRY_POINT_GROUP = "jaxunlearn.unlearners"
# Key ids below this are reserved for the library's own stages; a user's unlearner without
# an explicit id gets one derived from its name above it.
RESERVED_KEY_IDS = 1000


class PluginError(ValueError):
    """A plugin or unlearner definition that cannot be used (a ValueError: the CLI exits 2)."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Where equal-budget tuning (``jaxunlearn.tuning``) draws one hyperparameter or setting.

    Attributes:
        low, high: inclusive bounds. For an epochs setting, ``high`` None means the cost
            cap: ``ceil(0.2 x`` the original's training epochs``)`` (unlearning may cost at
            most a fifth of training, as Deep Unlearn caps it).
        log: draw log-uniformly (learning rates, weights spanning decades); else uniformly.
        integer: an integer static setting (epochs): each distinct value builds its own
            pipeline, so trials are grouped by it (the groups' calls share compiled programs
            where the epoch count is not part of them: ``LoopPlan.map_block``).
    """

    low: float
    high: float | None
    log: bool = False
    integer: bool = False

    def __post_init__(self):
        if self.high is None and not self.integer:
            raise ValueError("Range: only an integer (epochs) setting may leave high to the cost cap")
        if self.high is not None and not self.low <= self.high:
            raise ValueError(f"Range: low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"Range: a log range needs low > 0, got {self.low}")


LR_RANGE = Range(1e-5, 1e-1, log=True)  # Deep Unlearn's learning-rate range
EPOCHS_RANGE = Range(1, None, log=True, integer=True)  # 1 to the cost cap


@dataclasses.dataclass(frozen=True)
class Unlearner:
    """One registered stage: an unlearner, or a reference stage (original, retrain).

    Attributes:
        name: the stage's name in tables, ``--unlearners``, ``--hp NAME.lr=...`` and
            checkpoint folders: letters, digits and ``_`` (starting with a letter).
        make: the factory ``make(model, task, cfg, plan, settings) -> Pipeline``:
            ``model`` a ``ModelFns``, ``task`` a ``Task``, ``cfg`` the ``StudyConfig``
            (study-wide settings: batch_size, loss, augment_pad, ...), ``plan`` the
            ``LoopPlan``, ``settings`` an instance of ``settings`` (None without one).
        hp: the float hyperparameters the pipeline reads from ``hp`` and their defaults;
            what ``--hp``/``--sweep`` may set (values never recompile anything).
        hp_bounds: inclusive (low, high) ranges of hyperparameters; a name ending in
            ``lr`` must be > 0 whatever its bounds.
        settings: a frozen dataclass of static settings (epochs, batch sizes, ...) with a
            default for every field, validating itself in ``__post_init__``; changing one
            recompiles. None: the unlearner has none.
        key_id: the integer folded into each seed's key for this stage: seed i's key is
            ``fold_in(fold_in(key(seed), i), key_id)``, so a fixed id keeps results
            bitwise the same from version to version. None: derived from ``name``
            (``derived_key_id``).
        default: run by the default study (``StudyConfig().unlearners``).
        reference: a reference stage every study runs (original, retrain), never listed in
            ``--unlearners``.
        claims_subject: the paper's claims (``jaxunlearn.claims``) are tested for this
            unlearner against every other.
        aliases: old option names -> settings field: a top-level config key or a
            ``--NAME-FIELD`` option kept for compatibility (default: ``NAME_FIELD`` for
            every field).
        description: one line for ``jaxunlearn list``.
        search: where equal-budget tuning draws the unlearner's float hyperparameters (keys
            of ``hp``) and integer settings (fields of ``settings``), as ``Range``s; the
            others keep their defaults. Empty: tuning scores it at its defaults and says so.
        shapes_only: the factory reads nothing of the task but its shapes (no row, no
            forget row, no count: its ``Fit`` phases read their rows and, under a plan with
            row counts as data, their counts when the program runs). Its pipeline then
            serves every forget set of a task's shape, so a process builds and traces it once
            per shape (``programs.stage_key``). Declare it only for such a factory: a
            pipeline built for one forget set would run on another.
        forget_count_class: with ``shapes_only``, for a factory that also reads the number
            of forget training rows, but only through this function of (the study's
            ``StudyConfig``, the resolved settings, that count): forget sets whose counts
            give equal values get the same pipeline (e.g. ``batch_capped_count``: the count
            sets the batch size of a pass over the forget rows only while it is under a
            batch). None: the factory never reads the count.
    """

    name: str
    make: Callable[..., Any]
    hp: Mapping[str, float]
    hp_bounds: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    settings: type | None = None
    key_id: int | None = None
    default: bool = False
    reference: bool = False
    claims_subject: bool = False
    aliases: Mapping[str, str] | None = None
    description: str = ""
    search: Mapping[str, Range] = dataclasses.field(default_factory=dict)
    shapes_only: bool = False
    forget_count_class: Callable[[Any, Any, int], Hashable] | None = None

    def __post_init__(self):
        if self.key_id is None:
            object.__setattr__(self, "key_id", derived_key_id(self.name))
        object.__setattr__(self, "hp", dict(self.hp))
        object.__setattr__(self, "hp_bounds", dict(self.hp_bounds))
        object.__setattr__(self, "search", dict(self.search))
        if self.aliases is None:
            fields = self.setting_fields()
            object.__setattr__(self, "aliases", {f"{self.name}_{f}": f for f in fields})
        else:
            object.__setattr__(self, "aliases", dict(self.aliases))

    def setting_fields(self) -> tuple[str, ...]:
        if self.settings is None or not dataclasses.is_dataclass(self.settings):
            return ()  # not a dataclass: ``register`` says so
        return tuple(f.name for f in dataclasses.fields(self.settings))

    def resolve_settings(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The settings instance with ``overrides`` (field -> value) over the defaults.

        Raises:
            ValueError: an unknown field, a value of the wrong type, or the settings
                class's own validation (the message names the unlearner).
        """
        overrides = dict(overrides or {})
        if self.settings is None:
            if overrides:
                raise ValueError(f"{self.name} has no settings; got {sorted(overrides)}")
            return None
        fields = self.setting_fields()
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"{self.name} has no setting(s) {unknown}; its settings: {list(fields)}")
        hints = typing.get_type_hints(self.settings)
        values = {k: _coerce(f"{self.name}.{k}", hints.get(k, Any), v) for k, v in overrides.items()}
        try:
            return self.settings(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.name} settings: {err}") from err

    def code_identity(self) -> Any:
        """What identifies the factory's code in checkpoint keys (``jaxunlearn.identity``).

        Returns:
            None for a library factory (a plain jaxunlearn function that closes over nothing:
            ``checkpoints.training_code_fingerprint`` covers it; one that closes over values:
            its name and those values); a plug-in's function by its name and a digest of its source and of the user's
            code it uses (``code_name``, even from an installed package), anything else
            (a ``functools.partial``: its function and arguments) by ``describe_value``.

        Raises:
            IdentityError: the factory holds a value that cannot be described (its repr holds
                a memory address or is abbreviated).
        """
        make = inspect.unwrap(self.make)
        where = f"unlearner {self.name!r}: its factory"
        if inspect.isfunction(make) and is_library_module(make.__module__):
            return describe_value(make, where) if make.__closure__ else None
        return code_name(make, root=True) if inspect.isfunction(make) else describe_value(self.make, where)

    def build(self, model, task, cfg, plan, settings: Any = None):
        """The stage's ``Pipeline`` for this study (``settings``: default ``cfg``'s).

        A pipeline made without hyperparameters gets the registered ones (``hp``).

        Raises:
            ValueError: the factory returned no Pipeline, or one whose hyperparameters
                differ from the registered names.
        """
        from jaxunlearn.unlearn.base import Pipeline

        if settings is None:
            settings = self.resolve_settings(cfg.settings_of(self.name))
        pipeline = self.make(model, task, cfg, plan, settings)
        if not isinstance(pipeline, Pipeline):
            raise ValueError(
                f"unlearner {self.name!r}: make(...) must return a Pipeline, got {type(pipeline).__name__}"
            )
        default_hp = dict(self.hp) if pipeline.default_hp is None else pipeline.default_hp
        if set(default_hp) != set(self.hp):
            raise ValueError(
                f"unlearner {self.name!r}: its pipeline's hyperparameters {sorted(default_hp)} "
                f"differ from the registered ones {sorted(self.hp)}"
            )
        if pipeline.layout is not None:
            return dataclasses.replace(pipeline, default_hp=default_hp)
        layout_of = self.layout_of(cfg, settings, plan)
        layout = (layout_of or type(task).layout)(pipeline.task_for(task))
        return dataclasses.replace(pipeline, default_hp=default_hp, layout=layout, layout_of=layout_of)

    def layout_of(self, cfg, settings, plan) -> Callable[[Any], tuple] | None:
        """What this stage's pipelines depend on of a task under ``plan``, as a function of
        the task (``Pipeline.layout_of``; ``settings``: the resolved settings). None: its
        whole ``Task.layout()``, forget-row counts included; for a factory that reads only
        shapes (``shapes_only``) under a plan that reads the counts at run time, the layout
        without counts and, with ``forget_count_class``, the forget count's class."""
        if not self.shapes_only or plan.counts_in_program:
            return None
        return functools.partial(_layout_without_counts, self.forget_count_class, cfg, settings)


def _layout_without_counts(forget_count_class, cfg, settings, task) -> tuple:
    """``Task.layout(counts=False)``, with the class of the task's forget training count
    when ``forget_count_class`` is given (``Unlearner.layout_of``)."""
    layout = task.layout(counts=False)
    if forget_count_class is None:
        return layout
    count = int(task.train.host_indices("forget").size)
    return (*layout, ("forget count class", forget_count_class(cfg, settings, count)))


def batch_capped_count(cfg, settings, count: int) -> int:
    """A ``forget_count_class``: the forget count capped at the study's batch size, for a
    factory that reads the count only as the batch size of a pass over the forget rows,
    ``min(batch size, count)`` (every count of at least a batch gets one pipeline)."""
    del settings
    return min(count, cfg.batch_size)


def derived_key_id(name: str) -> int:
    """A stable key id for a user's unlearner: CRC-32 of its name, above the reserved ids."""
    return RESERVED_KEY_IDS + zlib.crc32(name.encode()) % (2**31 - 1 - RESERVED_KEY_IDS)


def _coerce(where: str, hint: Any, value: Any) -> Any:
    """``value`` checked against a settings field's annotation (int, float, str, bool,
    ``X | None``); an int is accepted for a float. Other annotations accept anything."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ValueError(f"{where} cannot be None")
    for kind in allowed:
        if kind is Any or not isinstance(kind, type):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            continue
        if isinstance(value, kind):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ValueError(f"{where} must be {names}, got {value!r}")


_REGISTRY: dict[str, Unlearner] = {}
_entry_points_loaded = False


def _check_definition(unlearner: Unlearner, source: str) -> None:
    """Everything checkable without compiling: name, factory signature, hyperparameter
    defaults and bounds, the settings class. Raises PluginError naming ``source``."""
    where = f"{source}: unlearner {unlearner.name!r}"
    name = unlearner.name
    if not isinstance(name, str) or not name.isidentifier() or not name[0].isalpha():
        raise PluginError(f"{source}: unlearner name {name!r} must be letters, digits and '_', starting with a letter")
    if not callable(unlearner.make):
        raise PluginError(
            f"{where}: make must be a function make(model, task, cfg, plan, settings), got {unlearner.make!r}"
        )
    try:
        inspect.signature(unlearner.make).bind(*range(5))
    except TypeError as err:
        raise PluginError(
            f"{where}: make must take (model, task, cfg, plan, settings), but "
            f"{getattr(unlearner.make, '__name__', unlearner.make)}{inspect.signature(unlearner.make)} "
            f"cannot ({err})"
        ) from None
    except ValueError:
        pass  # no signature to inspect (a builtin): accepted
    for hp_name, default in unlearner.hp.items():
        if not isinstance(hp_name, str) or not hp_name.isidentifier():
            raise PluginError(f"{where}: hyperparameter name {hp_name!r} must be an identifier")
        if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(default):
            raise PluginError(f"{where}: hyperparameter {hp_name!r} needs a finite float default, got {default!r}")
    for hp_name, bounds in unlearner.hp_bounds.items():
        if hp_name not in unlearner.hp:
            raise PluginError(
                f"{where}: bounds for {hp_name!r}, which is not among its hyperparameters {sorted(unlearner.hp)}"
            )
        if not (isinstance(bounds, tuple) and len(bounds) == 2 and bounds[0] <= unlearner.hp[hp_name] <= bounds[1]):
            raise PluginError(f"{where}: bounds of {hp_name!r} must be (low, high) around its default, got {bounds!r}")
    if unlearner.settings is not None:
        if not (isinstance(unlearner.settings, type) and dataclasses.is_dataclass(unlearner.settings)):
            raise PluginError(f"{where}: settings must be a dataclass, got {unlearner.settings!r}")
        missing = [
            f.name
            for f in dataclasses.fields(unlearner.settings)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise PluginError(f"{where}: settings field(s) {missing} have no default")
        try:
            unlearner.settings()
        except Exception as err:
            raise PluginError(f"{where}: its default settings are invalid: {err}") from err
    for alias, field in _aliases(unlearner).items():
        if field not in unlearner.setting_fields():
            raise PluginError(f"{where}: alias {alias!r} names no setting ({field!r})")
    for key, rng in unlearner.search.items():
        if not isinstance(rng, Range):
            raise PluginError(f"{where}: search {key!r} must be a Range, got {rng!r}")
        if key in unlearner.hp:
            if rng.integer:
                raise PluginError(f"{where}: search {key!r} is a float hyperparameter; integer Ranges are for settings")
            low, high = unlearner.hp_bounds.get(key, (-math.inf, math.inf))
            assert rng.high is not None  # Range checks it for floats
            if rng.low < low or rng.high > high or (key.endswith("lr") and rng.low <= 0):
                raise PluginError(f"{where}: search {key!r} [{rng.low}, {rng.high}] leaves its bounds {(low, high)}")
        elif key in unlearner.setting_fields():
            if not rng.integer:
                raise PluginError(f"{where}: search {key!r} is a setting; only integer settings (epochs) are searched")
        else:
            raise PluginError(
                f"{where}: search {key!r} is neither a hyperparameter {sorted(unlearner.hp)} nor a setting "
                f"{list(unlearner.setting_fields())}"
            )


def register(unlearner: Unlearner, *, source: str | None = None, replace: bool = False) -> Unlearner:
    """Adds ``unlearner`` to the registry and returns it.

    Args:
        unlearner: the definition.
        source: who registers it, for error messages (default: the factory's module).
        replace: allow replacing a registered unlearner of the same name.

    Raises:
        PluginError: a bad definition, a name already taken, or a key id another
            unlearner already uses.
    """
    source = source or _source_of(unlearner.make)
    _check_definition(unlearner, source)
    old = _REGISTRY.get(unlearner.name)
    if old is not None and old != unlearner and not replace:
        raise PluginError(
            f"{source}: unlearner name {unlearner.name!r} is already registered (by "
            f"{getattr(old.make, '__module__', '?')}); choose another name"
        )
    clash = [u.name for u in _REGISTRY.values() if u.key_id == unlearner.key_id and u.name != unlearner.name]
    if clash:
        raise PluginError(
            f"{source}: unlearner {unlearner.name!r}: key id {unlearner.key_id} is already used by "
            f"{clash[0]!r}; choose another key_id"
        )
    taken = {alias for u in _REGISTRY.values() if u.name != unlearner.name for alias in _aliases(u)}
    if set(_aliases(unlearner)) & taken:
        raise PluginError(
            f"{source}: unlearner {unlearner.name!r}: alias(es) {sorted(set(_aliases(unlearner)) & taken)} "
            f"already belong to another unlearner"
        )
    _REGISTRY[unlearner.name] = unlearner
    return unlearner


def _source_of(make: Any) -> str:
    """Who defines ``make``: its module, or ``plugin SPEC`` for a plugin file."""
    name = getattr(make, "__module__", None) or "?"
    spec = getattr(sys.modules.get(name), "__jaxunlearn_plugin__", None)
    return f"plugin {spec}" if spec else name


def unregister(name: str) -> None:
    """Removes a registered unlearner (tests, interactive sessions)."""
    _REGISTRY.pop(name, None)


def load_entry_points() -> None:
    """Imports the packages registered under the ``jaxunlearn.unlearners`` entry-point
    group (once): each entry point is a module that registers its unlearners when
    imported, or an ``Unlearner`` (or a list of them) to register."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {point.name!r} ({point.value})"
        try:
            loaded = point.load()
        except Exception as err:
            raise PluginError(f"{source}: cannot be imported: {type(err).__name__}: {err}") from err
        for item in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
            if isinstance(item, Unlearner):
                register(item, source=source)
            elif not isinstance(item, types.ModuleType):
                raise PluginError(f"{source}: must name a module or an Unlearner, got {type(item).__name__}")


def load_plugin(spec: str) -> types.ModuleType:
    """Imports a user's module and registers its unlearners.

    The module's ``register`` calls run when it is first imported; in any case every
    ``Unlearner`` the module defines at top level (whose factory lives in it) is
    registered, so loading a plugin again, or one that only defines its records, works.

    Args:
        spec: an importable module name (``my_pkg.unlearners``) or a path to a ``.py`` file.

    Returns:
        The module.

    Raises:
        PluginError: the module cannot be found or imported, or an unlearner it defines
            is invalid (the message names the plugin and the error).
    """
    try:
        if spec.endswith(".py") or "/" in spec or Path(spec).is_file():
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise PluginError(f"plugin {spec}: no such file")
            name = f"jaxunlearn_plugin_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, path)
                if loader_spec is None or loader_spec.loader is None:  # e.g. a file not ending in .py
                    raise PluginError(f"plugin {spec}: not a Python module (give a .py file or a module name)")
                module = importlib.util.module_from_spec(loader_spec)
                vars(module)["__jaxunlearn_plugin__"] = spec  # names the plugin in register's messages
                sys.modules[name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        else:
            module = importlib.import_module(spec)
    except PluginError as err:
        raise PluginError(str(err) if str(err).startswith(f"plugin {spec}") else f"plugin {spec}: {err}") from None
    except ModuleNotFoundError as err:
        if not (err.name and (spec == err.name or spec.startswith(err.name + "."))):  # missing inside the plugin
            raise PluginError(f"plugin {spec}: importing it failed: {type(err).__name__}: {err}") from err
        raise PluginError(
            f"plugin {spec}: cannot be imported: {err} (give an importable module name or a .py file path)"
        ) from err
    except Exception as err:
        raise PluginError(f"plugin {spec}: importing it failed: {type(err).__name__}: {err}") from err
    for value in list(vars(module).values()):
        if isinstance(value, Unlearner) and getattr(value.make, "__module__", None) == module.__name__:
            try:
                register(value, source=f"plugin {spec}")
            except PluginError as err:
                raise PluginError(
                    str(err) if str(err).startswith(f"plugin {spec}") else f"plugin {spec}: {err}"
                ) from None
    return module


def get(name: str) -> Unlearner:
    """The registered stage ``name``.

    Raises:
        ValueError: no such stage (the message lists the registered ones).
    """
    load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown unlearner {name!r}; known unlearners: {names()}")
    return _REGISTRY[name]


def all_stages() -> list[Unlearner]:
    """Every registered stage in registration order (the reference stages first)."""
    load_entry_points()
    return list(_REGISTRY.values())


def names(reference: bool = False) -> list[str]:
    """The registered unlearners' names (with ``reference``: also original and retrain)."""
    return [u.name for u in all_stages() if reference or not u.reference]


def reference_stages() -> tuple[str, ...]:
    return tuple(u.name for u in all_stages() if u.reference)


def default_unlearners() -> tuple[str, ...]:
    return tuple(u.name for u in all_stages() if u.default and not u.reference)


def alias_fields() -> dict[str, tuple[str, str]]:
    """Every unlearner's old option names: alias -> (unlearner, settings field)."""
    return {alias: (u.name, field) for u in all_stages() for alias, field in _aliases(u).items()}


def _aliases(unlearner: Unlearner) -> Mapping[str, str]:
    assert unlearner.aliases is not None  # resolved by __post_init__
    return unlearner.aliases


def require_positive(settings: Any, *fields: str) -> None:
    """Raises ValueError unless each named field of ``settings`` is a positive int (for a
    settings class's ``__post_init__``)."""
    for field in fields:
        value = getattr(settings, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")
