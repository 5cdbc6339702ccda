"""The settings and result of a many-model evaluation, and the registry of protocols.

A protocol is a function ``run(cfg, ecfg, blocks, task, log) -> EvaluationResult`` that
trains the blocks of models it needs with a ``BlockRunner`` and scores them. Each protocol
lives in its own module and registers itself with ``register_protocol``, naming the
``EvaluationConfig`` fields it reads beyond ``SHARED_SETTINGS`` (those, and only those,
are listed in its results and docs: ``settings_of``) and the columns of its table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxunlearn.evaluation.table import Column

# The EvaluationConfig fields every protocol reads (``run_evaluation``: which protocol, how
# many models per row, and how they are chunked); a protocol's own fields come on top.
SHARED_SETTINGS = ("protocol", "models", "chunk", "memory_limit")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Settings of one evaluation (the study's own settings are a ``StudyConfig``).

    Attributes:
        protocol: a registered protocol ("neurips23", "ulira").
        models: neurips23: N unlearned models (from ONE original), N retrained, and a
            second N retrained (the noise floor); ulira: shadow models per stage.
        groups: ulira only: distinct training sets (halves of the candidate rows, in
            complementary pairs); each holds models / groups shadows. Even, >= 4.
        attack_models: neurips23 only: how many models of each row the paper's SVC
            attack runs on (one SVC fit per model: the slow part of the metrics).
        grid_unit: neurips23 only: the unit of the eps attacks' grid on each example,
            "reference-std" (the retrained models' standard deviation there) or "target"
            (one standardised target unit: the challenge's rule taken literally);
            ``jaxunlearn.metrics.epsilon.GRID_UNITS`` says why the first is the default.
        chunk: models per compiled call; None: the most that fit ``memory_limit``.
        memory_limit: bytes (or "2GB") one call may plan to use; None: the device's free
            memory.
    """

    protocol: str = "neurips23"
    models: int = 256
    groups: int = 16
    attack_models: int = 32
    grid_unit: str = "reference-std"
    chunk: int | None = None
    memory_limit: str | int | None = None

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {sorted(PROTOCOLS)}")
        for name in ("models", "groups", "attack_models"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.models < 2:
            raise ValueError(f"models must be >= 2 (two samples per example), got {self.models}")
        from jaxunlearn.metrics.epsilon import GRID_UNITS

        if self.grid_unit not in GRID_UNITS:
            raise ValueError(f"unknown grid unit {self.grid_unit!r}; choose from {GRID_UNITS}")
        if self.chunk is not None and (not isinstance(self.chunk, int) or self.chunk < 1):
            raise ValueError(f"chunk must be a positive integer or None, got {self.chunk!r}")
        if self.memory_limit is not None:
            from jaxunlearn.memory import parse_bytes

            parse_bytes(self.memory_limit)  # an unreadable size fails here, before any work
        if self.protocol == "ulira":
            if self.groups < 4 or self.groups % 2:
                raise ValueError(
                    f"groups must be even and >= 4 (complementary halves, one held out at a time), got {self.groups}"
                )
            if self.models % self.groups:
                raise ValueError(f"models ({self.models}) must be a multiple of groups ({self.groups})")
            per_side = (self.groups - 2) // 2 * (self.models // self.groups)
            if per_side < 2:
                raise ValueError(
                    f"{self.models} shadows in {self.groups} groups fit each held-out group's Gaussians on "
                    f"{per_side} IN (and OUT) shadow(s); a variance needs at least 2: give more models"
                )

    def to_dict(self) -> dict[str, Any]:
        """The settings the protocol reads (``settings_of``): a field it ignores (ulira's
        ``groups`` in a neurips23 evaluation) is not listed."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in settings_of(self.protocol)}


@dataclasses.dataclass
class EvaluationResult:
    """What an evaluation measured.

    Attributes:
        protocol: its name; rows: the scored rows in table order (controls first).
        metrics: {row: {metric: float}}: the summary numbers of each row.
        per_example: {row: {name: list}}: per forget example (neurips23: "eps"; ulira:
            "auc"), in the order of ``example_rows`` (indices into the training split).
        example_rows: [F] training-row indices of the examples.
        histograms: {row: eps histogram} (neurips23).
        timings: {block: {"wall", "compile", "run", "models", ...}}.
        table: Markdown table; notes: the lines the report prints under it (the
            warnings among them).
        columns: the table's columns (metric key, header, definition), in order.
        warnings: what makes the numbers less meaningful than they look (e.g. too few
            models for the NeurIPS'23 points: ``jaxunlearn.metrics.epsilon.few_models_warning``).
    """

    protocol: str
    rows: list[str]
    metrics: dict[str, dict[str, float]]
    per_example: dict[str, dict[str, list]]
    example_rows: list[int]
    timings: dict[str, dict[str, float]]
    table: str
    histograms: dict[str, dict] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    columns: list[Column] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


Protocol = Callable[..., EvaluationResult]
PROTOCOLS: dict[str, Protocol] = {}
PROTOCOL_SETTINGS: dict[str, tuple[str, ...] | None] = {}  # None: not declared (every field is listed)
PROTOCOL_COLUMNS: dict[str, list[Column]] = {}


def register_protocol(
    name: str, run: Protocol, settings: tuple[str, ...] | None = None, columns: list[Column] | None = None
) -> Protocol:
    """Registers ``run`` as protocol ``name``.

    Args:
        settings: the ``EvaluationConfig`` fields ``run`` reads beyond ``SHARED_SETTINGS``
            (None: undeclared, so every field is listed as a setting).
        columns: its table's columns (for docs/EVALUATION.md's column reference).
    """
    if name in PROTOCOLS:
        raise ValueError(f"protocol {name!r} is already registered")
    fields = {f.name for f in dataclasses.fields(EvaluationConfig)}
    unknown = sorted(set(settings or ()) - fields)
    if unknown:
        raise ValueError(f"protocol {name!r} declares settings {unknown} that EvaluationConfig does not have")
    PROTOCOLS[name] = run
    PROTOCOL_SETTINGS[name] = None if settings is None else tuple(settings)
    PROTOCOL_COLUMNS[name] = list(columns or [])
    return run


def settings_of(protocol: str) -> tuple[str, ...]:
    """The ``EvaluationConfig`` fields protocol ``protocol`` reads, in field order:
    ``SHARED_SETTINGS`` and its own (every field when it declared none)."""
    own = PROTOCOL_SETTINGS.get(protocol)
    return tuple(
        f.name
        for f in dataclasses.fields(EvaluationConfig)
        if own is None or f.name in SHARED_SETTINGS or f.name in own
    )
