"""Forget scenarios: named ways of choosing what to forget, for any dataset.

A scenario turns a dataset (its ``RawData``) and a draw number into a forget rule
(``jaxunlearn.data.forget_rules``). Studies, evaluations and the leaderboard accept a
scenario wherever they accept a rule (``scenario_rule``). Built-ins:

    region          the dataset's own label-range rule (the paper's setting: e.g. the top
                    fifth of the targets), or "quantile>=0.8" when its default is not one
    random-1        1% of the rows at random (a few people ask to be removed)
    random-10       10% of the rows at random
    subpopulation   the rows the dataset declares as a subpopulation (``RawData.subpopulation``:
                    a time window, a category, a block of groups)

A spec may give its own rule after a colon: ``region:label>=30``,
``subpopulation:feature[1]>1.5``. The draw picks which random rows a random scenario takes
(``random:0.01@DRAW``); rules of the other scenarios do not depend on it. Tuning and final
scores use different draws, so the rows that chose the hyperparameters are never scored.

A researcher adds a scenario with ``register_scenario(Scenario(...))``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from jaxunlearn.data.forget_rules import LabelQuantile, LabelRange, parse_rule

if TYPE_CHECKING:
    from jaxunlearn.data.sources import RawData

REGION_FALLBACK = "quantile>=0.8"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named forget scenario.

    Attributes:
        name: as written in specs and tables (letters, digits, ``-``).
        description: one line for listings and the leaderboard.
        rule: ``rule(raw, draw, given) -> (rule string, what it forgets)``; ``given`` is
            the rule after the spec's colon, or None.
        random: the rule depends on the draw (rows drawn at random): per-example tests of
            forgetting (U-LiRA) apply.
    """

    name: str
    description: str
    rule: Callable[[RawData, int, str | None], tuple[str, str]]
    random: bool = False


SCENARIOS: dict[str, Scenario] = {}


def register_scenario(scenario: Scenario) -> Scenario:
    """Adds ``scenario`` to the registry (a name may not be registered twice)."""
    if not scenario.name or not all(c.isalnum() or c == "-" for c in scenario.name):
        raise ValueError(f"a scenario name is letters, digits and '-', got {scenario.name!r}")
    if scenario.name in SCENARIOS:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    SCENARIOS[scenario.name] = scenario
    return scenario


def split_spec(spec: str) -> tuple[Scenario, str | None]:
    """``"NAME"`` or ``"NAME:RULE"`` -> (the scenario, the rule or None).

    Raises:
        ValueError: an unknown scenario (the message lists the known ones).
    """
    name, colon, given = spec.strip().partition(":")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {sorted(SCENARIOS)} (NAME or NAME:RULE)")
    if colon and not given:
        raise ValueError(f"scenario {spec!r}: give a rule after the colon, or drop the colon")
    if colon:
        parse_rule(given)  # a bad rule fails here, naming the accepted forms
    return SCENARIOS[name], given or None


def scenario_rule(spec: str, raw: RawData, draw: int = 0) -> tuple[str, str]:
    """The forget rule of scenario ``spec`` on ``raw`` for random draw ``draw``.

    Returns:
        (rule string for ``build_task``/``StudyConfig.forget``, what it forgets in words).
    """
    if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
        raise ValueError(f"a scenario's draw must be an integer >= 0, got {draw!r}")
    scenario, given = split_spec(spec)
    return scenario.rule(raw, draw, given)


def _region(raw: RawData, draw: int, given: str | None) -> tuple[str, str]:
    del draw
    if given is not None:
        return given, f"the label region {given}"
    default = raw.default_rule
    rule = parse_rule(default) if isinstance(default, str) else default
    if isinstance(default, str) and isinstance(rule, (LabelRange, LabelQuantile)):
        return default, f"the dataset's label region {default}"
    return REGION_FALLBACK, f"the top fifth of the training targets ({REGION_FALLBACK})"


def _random(fraction: float) -> Callable[[RawData, int, str | None], tuple[str, str]]:
    def rule(raw: RawData, draw: int, given: str | None) -> tuple[str, str]:
        del raw
        if given is not None:
            raise ValueError(f"random-{fraction:.0%}: takes no rule (the fraction is its name)")
        return f"random:{fraction:g}@{draw}", f"{fraction:.0%} of each split's rows at random (draw {draw})"

    return rule


def _subpopulation(raw: RawData, draw: int, given: str | None) -> tuple[str, str]:
    del draw
    if given is not None:
        return given, f"the rows {given}"
    if raw.subpopulation is None:
        raise ValueError(
            f"dataset {raw.description.split(';')[0]!r} declares no subpopulation; give the rule yourself, "
            f"e.g. 'subpopulation:feature[1]>0' or 'subpopulation:position:0.4:0.5'"
        )
    return raw.subpopulation


register_scenario(Scenario("region", "a region of the target's range (the paper's setting)", _region))
register_scenario(Scenario("random-1", "1% of the rows at random", _random(0.01), random=True))
register_scenario(Scenario("random-10", "10% of the rows at random", _random(0.1), random=True))
register_scenario(Scenario("subpopulation", "a subpopulation defined by the inputs or the rows' order", _subpopulation))
