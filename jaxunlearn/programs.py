"""Traced programs reused within a process: a second study of the same shapes compiles nothing.

JAX reuses a jitted function's traced and compiled programs only while the function object
is the same one. A study builds its model, its stages' pipelines and their runners anew, so
without this module every study traces, lowers and loads (or compiles) every program again,
even when an earlier study in the process ran the very same ones: about 4 s for the default
study on the CPU, and most of a benchmark's compile time.

``reuse(key, make)`` returns the object an earlier call made under an equal ``key``, else
``make()``'s. The keys say everything the made object's traced code depends on:

- the model: ``model_key`` (its registered name or the user's class with a digest of its
  code, its fields, the compute dtype, the input shape);
- a stage's pipeline: ``stage_key`` (the stage, the study settings that build it, the
  stage's own settings and default hyperparameters, the model, the task's layout, the plan;
  for a plug-in, also its code's digest, every study setting and a digest of the data, since
  its factory may read any of them when it builds);
- programs built from those (runners, metric executors): the made object they close over, by
  ``id``; the cache entry keeps that object alive, so the ``id`` cannot be reused.

The library's factories read only the task's layout (its row counts and input shape) when
they build, and the rows themselves at run time (tested: ``tests/test_programs.py``).

``clear()`` empties the cache; ``JAXUNLEARN_REUSE_PROGRAMS=0`` turns reuse off.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["REUSE_ENV", "clear", "epochless_key", "model_key", "reuse", "runner", "size", "stage_key"]

REUSE_ENV = "JAXUNLEARN_REUSE_PROGRAMS"
# Entries kept, the least recently used dropped first. A repeated default study needs 15 (its
# model, 5 pipelines, 5 runners, the relearning and 3 metric programs). Each kept XLA:CPU
# program holds its code in memory maps of its own (a one-phase runner: about 290), and Linux
# refuses a process more than vm.max_map_count (65,530 by default) maps: with 256 entries a
# 32-cell benchmark died in cell 13 ("LLVM compilation error: Cannot allocate memory"). With
# 48 that benchmark peaked at 28,452 maps (benchmarks/RESULTS.md).
MAX_ENTRIES = 48

T = TypeVar("T")
_CACHE: collections.OrderedDict[Hashable, tuple[tuple[Any, ...], Any]] = collections.OrderedDict()


def enabled() -> bool:
    return os.environ.get(REUSE_ENV, "1") != "0"


def reuse(key: Hashable | None, make: Callable[[], T], keep: tuple[Any, ...] = ()) -> T:
    """The object made earlier under ``key``, else ``make()`` (remembered under ``key``).

    Args:
        key: everything the made object's traced code depends on; None: make a fresh one
            (nothing is remembered).
        keep: objects whose ``id`` appears in ``key``; the entry holds them so that no other
            object can take their ``id`` while it lives.
    """
    if key is None or not enabled():
        return make()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key][1]
    made = make()
    _CACHE[key] = (keep, made)
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return made


def clear() -> None:
    """Forgets every remembered object (their programs are freed with them)."""
    _CACHE.clear()


def size() -> int:
    """How many objects are remembered."""
    return len(_CACHE)


def _frozen(value: Any) -> str:
    """A hashable, order-independent spelling of settings (dicts, dataclasses, tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, sort_keys=True, default=repr)


def model_key(cfg: Any, input_shape: tuple[int, ...]) -> Hashable:
    """The model of a prepared study (``study.prepare_study`` puts a user's model's class,
    code digest and fields in ``cfg.model``/``model_kwargs``)."""
    return ("model", cfg.model, _frozen(cfg.model_kwargs), cfg.dtype, tuple(input_shape))


def stage_key(
    stage: str,
    cfg: Any,
    task: Any,
    model: Any,
    plan: Any,
    without: frozenset = frozenset(),
    forget_count: bool = True,
) -> Hashable:
    """Everything ``Unlearner.build`` reads for ``stage`` of the prepared study ``cfg`` on
    ``task`` with ``model`` (a ``ModelFns`` made under ``model_key``, so one object per
    model) and ``plan``; a library stage's own settings named in ``without`` left out, and
    with ``forget_count`` False, the forget rule and counts (for ``epochless_key``)."""
    from jaxunlearn import unlearn
    from jaxunlearn.checkpoints import data_fingerprint, training_settings

    unlearner = unlearn.get(stage)
    code = unlearner.code_identity()
    settings = training_settings(cfg, stage)
    if code is None:  # the library's factories: the seeds are data, the rows too
        # A factory that reads only the task's shapes never sees the forget rule either.
        data_only = ("seeds", "seed", "forget") if unlearner.shapes_only or not forget_count else ("seeds", "seed")
        settings = {k: v for k, v in settings.items() if k not in data_only}
        if "settings" in settings:
            settings["settings"] = {k: v for k, v in settings["settings"].items() if k not in without}
        data = None
    else:  # a plug-in may read any setting and any value of the task when it builds
        settings = cfg.to_dict()
        data = data_fingerprint(task)
    if forget_count:
        layout_of = unlearner.layout_of(cfg, unlearner.resolve_settings(cfg.settings_of(stage)), plan)
        layout = (layout_of or type(task).layout)(task)
    else:
        layout = task.layout(counts=False)
    return (
        "stage",
        stage,
        id(unlearner),
        _frozen(code),
        _frozen(settings),
        _frozen(dict(unlearner.hp)),
        id(model),
        layout,
        plan,
        data,
    )


def epochless_key(stage: str, cfg: Any, task: Any, model: Any, plan: Any, pipeline: Any) -> Hashable | None:
    """A key that the pipelines of a library ``stage`` share when they differ only in the
    epochs settings the stage searches (its integer ``Range``s: tuning's groups), so one
    runner's compiled programs serve them all (``PipelineRunner(..., programs=...)``).

    Each phase's ``Fit`` reads its epoch count only in the host loop that calls the compiled
    epochs (never inside a traced function), and the library's factories pass those
    settings only to ``FitConfig.epochs`` or to the number of phases, which the key holds
    (tested against freshly built runners: ``tests/test_programs.py``). None for a plug-in
    (its factory may read them anywhere), a sharded stage, or a phase of another kind.

    Under a plan with row counts as data, a pipeline whose phases are all ``Fit``s holds no
    forget count in its programs but in the starts that say they read it
    (``Phase.start_reads_forget_count``): the library's factories read nothing else of the
    forget rows when they build. The key then leaves out the forget rule and counts, and a
    runner for another forget set runs the shared programs with its own such starts
    (Blindspot: the proxy and the student's epochs are compiled once per task shape, the
    start that computes the proxy's outputs on the forget rows once per count).
    """
    from jaxunlearn import unlearn
    from jaxunlearn.train.loop import Fit
    from jaxunlearn.unlearn.base import OneShot

    unlearner = unlearn.get(stage)
    epochs = frozenset(name for name, where in unlearner.search.items() if where.integer)
    if not epochs or unlearner.code_identity() is not None or pipeline.shards is not None:
        return None
    phases = []
    # A one-shot phase's computation may hold the count (SSD's forget pass sets its batch).
    forget_count = plan.counts_in_program or any(type(phase.fit) is not Fit for phase in pipeline.phases)
    for phase in pipeline.phases:
        fit = phase.fit
        if type(fit) is Fit:
            shape: tuple = (
                "fit",
                _frozen(dataclasses.replace(fit.cfg, epochs=1)),
                fit.row_slots,
                fit.counts_in_program,
            )
        elif type(fit) is OneShot:
            shape = ("one-shot",)
        else:
            return None
        phases.append((phase.name, phase.reads_hp, phase.start_reads_forget_count, shape))
    key = stage_key(stage, cfg, task, model, plan, without=epochs, forget_count=forget_count)
    return ("epochless", key, tuple(phases))


def runner(pipeline: Any, plan: Any, epochless: Hashable | None = None) -> Any:
    """The ``PipelineRunner`` of ``pipeline`` under ``plan``: made once per pipeline object;
    with ``epochless`` (``epochless_key``), on the compiled programs of the first runner made
    under that key, and a start that reads the forget count on the first runner's for the
    pipeline's layout."""
    from jaxunlearn.runner import PipelineRunner

    def make() -> Any:
        if epochless is None:
            return PipelineRunner(pipeline, plan)
        donor = reuse(epochless, lambda: PipelineRunner(pipeline, plan))
        if donor.pipeline is pipeline:
            return donor
        # The first runner for this pipeline's layout: its starts that read the forget count
        # (built for another count than the donor's) serve the later pipelines of that count.
        first = reuse((epochless, pipeline.layout), lambda: PipelineRunner(pipeline, plan, programs=donor))
        return first if first.pipeline is pipeline else PipelineRunner(pipeline, plan, programs=first)

    return reuse(("runner", id(pipeline), plan), make, keep=(pipeline,))
