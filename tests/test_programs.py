"""Programs reused within a process (jaxunlearn.programs) and seed blocks (LoopPlan.map_block):
a repeated study compiles nothing, a changed one never runs a stale program, and blocks give
the bits of one call."""

from __future__ import annotations

import dataclasses

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


def epoch_settings(name: str) -> list[str]:
    """The epochs settings an unlearner searches (its integer Ranges)."""
    from jaxunlearn import unlearn

    return [k for k, r in unlearn.get(name).search.items() if r.integer]


SEARCHES_EPOCHS = [name for name in ("finetune", "gaussian", "neggrad", "scrub", "blindspot") if epoch_settings(name)]


@pytest.mark.parametrize("name", SEARCHES_EPOCHS)
def test_pipelines_that_differ_in_epochs_share_programs_only_where_that_is_exact(name):
    # another pipeline's programs, run for this pipeline's epochs, must give what this
    # pipeline's own freshly built runner gives: no traced function may read the epochs
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.seeds import auto_plan
    from jaxunlearn.study import seed_keys
    from tests.helpers import build, tiny_model, train_original

    task = tiny_task()
    model, plan = tiny_model(task), auto_plan("dense")
    cfg = with_(TINY, seeds=2)
    original = train_original(model, task, plan, cfg).state
    one, two = (dict.fromkeys(epoch_settings(name), e) for e in (1, 2))
    first, second = build(name, model, task, cfg, plan, **one), build(name, model, task, cfg, plan, **two)
    keys = seed_keys(0, 2, name)
    shared_key = programs.epochless_key(name, with_(cfg, settings={name: one}), task, model, plan, first)
    if shared_key != programs.epochless_key(name, with_(cfg, settings={name: two}), task, model, plan, second):
        assert name == "scrub"  # its epochs are its number of phases: nothing to share
        return
    donor = PipelineRunner(first, plan)
    donor(keys, original, task, progress=False)  # traced and compiled for 1 epoch
    shared = PipelineRunner(second, plan, programs=donor)(keys, original, task, progress=False)
    fresh = PipelineRunner(second, plan)(keys, original, task, progress=False)
    assert shared.history["train_loss"].shape == (2, fresh.history["train_loss"].shape[1])
    for a, b in zip(jax.tree_util.tree_leaves(shared.state), jax.tree_util.tree_leaves(fresh.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_plugin_never_shares_programs_across_epochs():
    from jaxunlearn import unlearn
    from jaxunlearn.seeds import auto_plan
    from jaxunlearn.unlearn.registry import derived_key_id
    from tests.helpers import build, registered, tiny_model

    finetune = unlearn.get("finetune")
    mine = dataclasses.replace(
        finetune, name="mine_finetune", make=lambda *a: finetune.make(*a), key_id=derived_key_id("mine"), aliases={}
    )
    task = tiny_task()
    model, plan = tiny_model(task), auto_plan("dense")
    with registered([mine]):
        pipeline = build("mine_finetune", model, task, TINY, plan)
        assert programs.epochless_key("mine_finetune", TINY, task, model, plan, pipeline) is None


def _forget_more(task, extra: int):
    """``task`` with ``extra`` more forget training rows: another forget count."""
    import jax.numpy as jnp

    forget = np.asarray(task.train.forget).copy()
    forget[np.flatnonzero(forget < 0.5)[:extra]] = 1.0
    return task.replace(train=task.train.replace(forget=jnp.asarray(forget)))


def test_a_shapes_only_stage_serves_every_forget_set_of_a_task_and_a_counting_one_does_not():
    """Rows as data: a stage whose factory reads only shapes is built once for two forget
    sets of different sizes and different forget rules, and its run on the second is bitwise
    a fresh build's; Blindspot, which reads the forget count, gets a pipeline per count; a
    reused pipeline still refuses a row set smaller than a batch."""
    from jaxunlearn import unlearn
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.study import build_stage, prepare_study, seed_keys
    from tests.helpers import train_original

    cfg, task, model = prepare_study(TINY, tiny_task(), log=lambda m: None)[:3]
    plan = seeds.auto_plan("dense")
    other = _forget_more(task, 9).replace(name="the same data, another forget rule")
    other_cfg = dataclasses.replace(cfg, forget="random:0.3")
    reused = build_stage("finetune", other_cfg, other, model, plan)
    assert build_stage("finetune", cfg, task, model, plan) is reused
    assert build_stage("blindspot", cfg, task, model, plan) is not build_stage("blindspot", cfg, other, model, plan)

    original = train_original(model, other, plan, cfg).state
    keys = seed_keys(0, cfg.seeds, "finetune")
    fresh = unlearn.get("finetune").build(model, other, other_cfg, plan)
    runner = PipelineRunner(reused, plan)
    got = runner(keys, original, other, progress=False).state
    with CountTraces() as traces:  # another forget set (and name): nothing is traced again
        runner(keys, original, task, progress=False)
    assert traces.count == 0
    want = PipelineRunner(fresh, plan)(keys, original, other, progress=False).state
    for a, b in zip(jax.tree_util.tree_leaves(got.params), jax.tree_util.tree_leaves(want.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    nearly_all = _forget_more(task, task.train.size - int(np.asarray(task.train.forget).sum()) - 5)
    with pytest.raises(ValueError, match="larger than the 5 training 'retain' rows"):
        PipelineRunner(reused, plan)(keys, original, nearly_all, progress=False)


@pytest.mark.parametrize("stage", ["scrub", "ssd"])
def test_a_stage_that_reads_a_class_of_the_forget_count_is_built_once_per_class(stage):
    """SCRUB and SSD read the forget count only as the batch of their passes over the forget
    rows, min(batch size, count) (``Unlearner.forget_count_class``): two forget sets of at
    least a batch share one pipeline, whose run on the second traces nothing and is bitwise a
    fresh build's; a set under a batch gets its own."""
    from jaxunlearn import unlearn
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.study import build_stage, prepare_study, seed_keys
    from tests.helpers import train_original

    cfg, task, model = prepare_study(TINY, tiny_task(), log=lambda m: None)[:3]
    plan = seeds.auto_plan("dense")
    under = int(task.train.host_indices("forget").size)
    assert under < cfg.batch_size
    first = _forget_more(task, cfg.batch_size - under + 13).replace(name="a larger forget set")
    second = _forget_more(task, cfg.batch_size - under)  # exactly a batch
    reused = build_stage(stage, cfg, first, model, plan)
    assert build_stage(stage, dataclasses.replace(cfg, forget="random:0.3"), second, model, plan) is reused
    assert build_stage(stage, cfg, task, model, plan) is not reused

    original = train_original(model, task, plan, cfg).state
    keys = seed_keys(0, cfg.seeds, stage)
    runner = PipelineRunner(reused, plan)
    runner(keys, original, first, progress=False)
    with CountTraces() as traces:
        got = runner(keys, original, second, progress=False).state
    assert traces.count == 0
    fresh = unlearn.get(stage).build(model, second, cfg, plan)
    want = PipelineRunner(fresh, plan)(keys, original, second, progress=False).state
    for a, b in zip(jax.tree_util.tree_leaves(got.params), jax.tree_util.tree_leaves(want.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_blindspot_for_another_forget_count_runs_the_shared_programs_with_its_own_start():
    """Rows as data: Blindspot's pipelines for two forget counts share one epochless key; a
    runner for the second count takes the first's compiled proxy and student epochs and
    builds only the student's start (it computes the proxy's outputs on exactly the forget
    rows): one trace, and bitwise a fresh runner's states."""
    from jaxunlearn.runner import PipelineRunner
    from jaxunlearn.study import build_stage, prepare_study, seed_keys
    from tests.helpers import train_original

    cfg, task, model = prepare_study(TINY, tiny_task(), log=lambda m: None)[:3]
    plan = seeds.auto_plan("dense")
    other = _forget_more(task, 9)
    first, second = build_stage("blindspot", cfg, task, model, plan), build_stage("blindspot", cfg, other, model, plan)
    assert first is not second
    key = programs.epochless_key("blindspot", cfg, task, model, plan, first)
    assert key is not None and key == programs.epochless_key("blindspot", cfg, other, model, plan, second)

    original = train_original(model, task, plan, cfg).state
    keys = seed_keys(0, cfg.seeds, "blindspot")
    programs.runner(first, plan, key)(keys, original, task, progress=False)
    runner = programs.runner(second, plan, key)
    proxy, student = runner.drivers
    donor = programs.runner(first, plan, key)
    assert proxy.begin is donor.drivers[0].begin and student.epochs is donor.drivers[1].epochs
    assert student.begin is not donor.drivers[1].begin
    with CountTraces() as traces:
        got = runner(keys, original, other, progress=False).state
    assert traces.count == 1  # the student's start
    want = PipelineRunner(second, plan)(keys, original, other, progress=False).state
    for a, b in zip(jax.tree_util.tree_leaves(got.params), jax.tree_util.tree_leaves(want.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Another pipeline for that count (another epochs setting: a tuning group) takes that start too.
    longer_cfg = with_(cfg, settings={"blindspot": {"proxy_epochs": 1, "epochs": 3}})
    longer = build_stage("blindspot", longer_cfg, other, model, plan)
    assert programs.epochless_key("blindspot", longer_cfg, other, model, plan, longer) == key
    assert programs.runner(longer, plan, key).drivers[1].begin is student.begin
