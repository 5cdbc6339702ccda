"""Programs reused within a process (jaxunlearn.programs) and seed blocks (LoopPlan.map_block):
a repeated study compiles nothing, a changed one never runs a stale program, and blocks give
the bits of one call."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxunlearn import programs, seeds
from jaxunlearn.metrics.suite import METRICS, PER_STAGE
from jaxunlearn.study import run_study
from tests.helpers import TINY, tiny_task, with_

# 5 seeds: the CPU plan runs them as a block of 4 and a padded block of 4
CFG = with_(TINY, seeds=5, unlearners=("finetune",))
TRACES = "/jax/core/compile/jaxpr_trace_duration"


class CountTraces:
    """Counts JAX's traces of jitted functions while the block runs."""

    def __enter__(self):
        self.count = 0
        self._listening = True

        def listen(event: str, duration: float, **kwargs) -> None:
            if self._listening and event == TRACES:
                self.count += 1

        jax.monitoring.register_event_duration_secs_listener(listen)
        return self

    def __exit__(self, *exc):
        self._listening = False


def study(cfg=CFG):
    return run_study(cfg, progress=False, log=lambda m: None, task=tiny_task())


def assert_same(a, b):
    """Every per-seed value but the timings (``PER_STAGE`` metrics) bitwise equal."""
    assert a.per_seed.keys() == b.per_seed.keys()
    for row in a.per_seed:
        for metric, values in a.per_seed[row].items():
            if METRICS[metric].per == PER_STAGE:
                continue
            np.testing.assert_array_equal(values, b.per_seed[row][metric], err_msg=f"{row} {metric}")


@pytest.fixture(scope="module")
def first():
    return study()


def test_a_second_identical_study_traces_nothing_and_gives_the_same_bits(first):
    with CountTraces() as traces:
        again = study()
    assert traces.count == 0
    assert_same(first, again)


def test_a_study_with_other_settings_gets_its_own_programs(first):
    # another forget rule (another layout: other row counts) and other finetune epochs: the
    # reused programs must be the ones a fresh process would build
    changed = with_(CFG, forget="quantile>=0.6", settings={"finetune": {"epochs": 1}})
    reused = study(changed)
    programs.clear()
    fresh = study(changed)
    assert_same(reused, fresh)
    assert not np.array_equal(
        reused.per_seed["finetune"]["test_forget_mae"], first.per_seed["finetune"]["test_forget_mae"]
    )


def test_blocks_give_the_bits_of_one_call(first, monkeypatch):
    monkeypatch.setattr(seeds, "CPU_MAP_BLOCK", None)  # one program over all 5 seeds
    assert_same(first, study())


def test_reuse_can_be_turned_off(monkeypatch):
    made = []
    monkeypatch.setenv(programs.REUSE_ENV, "0")
    for _ in range(2):
        programs.reuse(("test", "off"), lambda: made.append(1))
    monkeypatch.delenv(programs.REUSE_ENV)
    for _ in range(2):
        programs.reuse(("test", "on"), lambda: made.append(1))
    assert len(made) == 3


def test_the_least_recently_used_entries_go_first():
    # each entry holds compiled programs and their memory maps: the cache stays bounded
    programs.clear()
    for i in range(programs.MAX_ENTRIES + 5):
        programs.reuse(("test", i), lambda i=i: i)
        programs.reuse(("test", 0), lambda: -1)  # kept in use
    assert programs.size() == programs.MAX_ENTRIES
    assert programs.reuse(("test", 0), lambda: -1) == 0  # still the first one made
    assert programs.reuse(("test", 1), lambda: -1) == -1  # dropped, made again
    programs.clear()
