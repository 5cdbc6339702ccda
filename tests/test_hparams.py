"""Per-stage hyperparameters (--hp) and sweeps (--sweep): rows, exactness, checkpoints, CLI."""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.checkpoints import CheckpointStore
from jaxunlearn.cli import build_parser, config_from_args
from jaxunlearn.config import StudyConfig
from jaxunlearn.hparams import check_hyperparameters, stage_variants, study_variants
from jaxunlearn.runner import PipelineRunner
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.study import run_study, seed_keys
from tests.helpers import TINY, build, tiny_model, tiny_task

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("hparams")

CFG = dataclasses.replace(TINY, seeds=2, unlearners=("blindspot",))
TIMES = ("run_seconds", "time_vs_retrain")


def test_rows_are_the_grid_of_a_stages_swept_values_with_defaults_filled_in():
    cfg = StudyConfig(
        hp={"blindspot.proxy_lr": 0.02},
        sweep={"blindspot.lr": [1e-4, 1e-3], "blindspot.beta": [0, 50]},
        unlearners=("finetune", "blindspot"),
    )
    rows = study_variants(cfg)
    assert [v.row for v in rows] == [
        "original",
        "retrain",
        "finetune",
        "blindspot[beta=0,lr=0.0001]",
        "blindspot[beta=0,lr=0.001]",
        "blindspot[beta=50,lr=0.0001]",
        "blindspot[beta=50,lr=0.001]",
    ]
    assert rows[-1].hp == {"lr": 1e-3, "proxy_lr": 0.02, "beta": 50.0}
    assert rows[-1].resolved_hp() == {"lr": 1e-3, "proxy_lr": 0.02, "beta": 50.0}
    assert stage_variants(cfg, "finetune")[0].hp == {}
    assert stage_variants(cfg, "finetune")[0].resolved_hp() == {"lr": 1e-3}
    assert cfg.to_dict()["sweep"] == {"blindspot.beta": [0.0, 50.0], "blindspot.lr": [1e-4, 1e-3]}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hp": {"blindspot.beta": "x"}}, "values must be numbers"),
        ({"sweep": {"blindspot.beta": []}}, "non-empty list"),
        ({"hp": [("blindspot.beta",)]}, "must map 'STAGE.NAME' keys"),
    ],
)
def test_malformed_values_are_refused_by_the_config(changes, message):
    with pytest.raises(ValueError, match=message):
        StudyConfig(**changes)


def test_a_runner_sweep_under_vmap_matches_one_call_per_value():
    task = tiny_task()
    model = tiny_model(task)
    plan = LoopPlan("vmap")
    keys = seed_keys(0, CFG.seeds, "blindspot")
    original = jax.vmap(lambda k: model.fresh_state(k, jnp.float32(0.01)))(keys)  # any states will do
    runner = PipelineRunner(build("blindspot", model, task, CFG, plan, epochs=1), plan)
    hps = [{"beta": 0.0}, {"beta": 5.0, "lr": 3e-3}]
    swept = runner.run_values(keys, original, task, hps, progress=False)
    for hp, result in zip(hps, swept, strict=True):
        alone = runner(keys, original, task, hp=runner.pipeline.hp(**hp), progress=False)
        for a, b in zip(jax.tree_util.tree_leaves(result.state), jax.tree_util.tree_leaves(alone.state), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.history["train_loss"], alone.history["train_loss"], rtol=1e-5)
    assert not np.allclose(swept[0].history["train_loss"], swept[1].history["train_loss"])  # the values did differ


def test_a_shared_proxy_gives_the_rows_of_a_proxy_per_value():
    task = tiny_task()
    model = tiny_model(task)
    plan = LoopPlan("map")
    keys = seed_keys(0, CFG.seeds, "blindspot")
    original = jax.vmap(lambda k: model.fresh_state(k, jnp.float32(0.01)))(keys)
    runner = PipelineRunner(build("blindspot", model, task, CFG, plan), plan)
    hps = [{"beta": 0.0}, {"beta": 5.0, "lr": 3e-3}]  # the proxy reads neither: trained once per seed
    shared = runner.run_values(keys, original, task, hps, progress=False)
    per_value = runner.run_values(keys, original, task, hps, progress=False, share_phases=False)
    for a, b in zip(shared, per_value, strict=True):
        for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
        assert a.diverged_at.shape == (CFG.seeds, 2)


@pytest.fixture(scope="module")
def swept_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    logs: list[str] = []
    cfg = dataclasses.replace(CFG, sweep={"blindspot.beta": (0.0, 10.0)})
    return root, cfg, run_study(cfg, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root), logs


def test_a_swept_row_is_the_study_run_with_that_value(swept_study, tmp_path):
    _, _, swept, logs = swept_study
    assert swept.rows == ["original", "retrain", "blindspot[beta=0]", "blindspot[beta=10]"]
    assert any("2 hyperparameter values x 2 seeds together" in m for m in logs)
    fixed = run_study(
        dataclasses.replace(CFG, hp={"blindspot.beta": 10.0}),
        progress=False,
        log=lambda m: None,
        task=tiny_task(),
        checkpoint_dir=None,
    )
    for metric, values in fixed.per_seed["blindspot"].items():
        if metric not in TIMES:  # map plan: the same program per seed slot, so bitwise
            np.testing.assert_array_equal(swept.per_seed["blindspot[beta=10]"][metric], values, err_msg=metric)
    assert not np.array_equal(
        swept.per_seed["blindspot[beta=0]"]["train_forget_mae"],
        swept.per_seed["blindspot[beta=10]"]["train_forget_mae"],
    )
    assert "blindspot[beta=10]" in swept.table


def test_the_sweeps_best_row_is_the_lowest_validation_gap_and_claims_say_why_they_are_absent(swept_study):
    _, _, swept, _ = swept_study
    gaps = {r: float(np.mean(swept.per_seed[r]["val_gap"])) for r in swept.rows}
    assert gaps["retrain"] == 0.0 and gaps["original"] > 0.0
    best = min(("blindspot[beta=0]", "blindspot[beta=10]"), key=gaps.get)
    report = swept.report()
    assert f"Best of the 2 blindspot rows: **{best}**, validation gap {gaps[best]:.3f}" in report
    assert "chosen without reading a test row" in report
    assert "The paper's claims about blindspot are not checked: blindspot is swept (2 rows)" in report


def test_resume_reloads_every_swept_row_and_a_wider_sweep_runs_only_its_new_value(swept_study):
    root, cfg, swept, _ = swept_study
    logs: list[str] = []
    again = run_study(cfg, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root, resume=True)
    assert sum("loaded from" in m for m in logs) == 4
    for row in swept.rows:
        np.testing.assert_array_equal(again.per_seed[row]["wasserstein"], swept.per_seed[row]["wasserstein"])
    logs.clear()
    wider = dataclasses.replace(cfg, sweep={"blindspot.beta": (0.0, 10.0, 50.0)})
    widened = run_study(wider, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root, resume=True)
    assert [m.split(":")[0] for m in logs if "loaded from" in m] == [
        "original",
        "retrain",
        "blindspot[beta=0]",
        "blindspot[beta=10]",
    ]
    assert any(m.startswith("blindspot: ") for m in logs)  # the one new value ran
    assert widened.rows[-1] == "blindspot[beta=50]"
    np.testing.assert_array_equal(
        widened.per_seed["blindspot[beta=10]"]["wasserstein"], swept.per_seed["blindspot[beta=10]"]["wasserstein"]
    )
    with pytest.raises(ValueError, match="differs in train_epochs"):  # what shapes training is still guarded
        run_study(
            dataclasses.replace(wider, train_epochs=CFG.train_epochs + 1),
            progress=False,
            log=logs.append,
            task=tiny_task(),
            checkpoint_dir=root,
            resume=True,
        )


def test_each_rows_checkpoint_key_covers_only_its_own_settings():
    fp = "f" * 64
    base = CheckpointStore("/nonexistent", dataclasses.replace(CFG, unlearners=("finetune", "blindspot")), fp)

    def key(row, **changes):
        return CheckpointStore("/nonexistent", dataclasses.replace(base.cfg, **changes), fp).key(row)

    assert key("original", hp={"blindspot.beta": 1.0}) == base.key("original")
    seven = base.cfg.to_dict()["settings"]  # TINY's settings, with blindspot's epochs changed
    seven["blindspot"]["epochs"] = 7
    assert key("original", settings=seven, sweep={"blindspot.beta": (1.0, 2.0)}) == base.key("original")
    assert key("finetune", settings=seven) == base.key("finetune")
    assert key("blindspot", settings=seven) != base.key("blindspot")
    assert key("blindspot", settings={"blindspot": {"epochs": 1}}) == key("blindspot", settings={})  # the default
    assert key("blindspot", hp={"blindspot.beta": 1.0}) != base.key("blindspot")
    assert key("blindspot", hp={"blindspot.beta": 50.0}) == base.key("blindspot")  # the default, spelt out
    assert key("original", hp={"original.lr": 0.02}) != base.key("original")
    assert key("original", train_epochs=4) != base.key("original")
    assert key("blindspot[beta=1]", sweep={"blindspot.beta": (1.0, 2.0)}) != base.key("blindspot")
    with pytest.raises(ValueError, match="no row 'blindspot\\[beta=3\\]'"):
        base.key("blindspot[beta=3]")


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_cli_options_override_the_config_files_tables(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        'unlearners = ["finetune", "blindspot"]\n[hp.blindspot]\nbeta = 5\nlr = 0.002\n'
        '[sweep]\n"finetune.lr" = [1e-4, 1e-3]\n'
    )
    cfg = config_from_args(
        _parse(["--config", str(path), "--hp", "blindspot.beta=7", "--sweep", "blindspot.proxy_lr=0.01,0.03"])
    )
    assert dict(cfg.hp) == {"blindspot.beta": 7.0, "blindspot.lr": 0.002}
    assert dict(cfg.sweep) == {"finetune.lr": (1e-4, 1e-3), "blindspot.proxy_lr": (0.01, 0.03)}
    check_hyperparameters(cfg)
    one = config_from_args(_parse(["--sweep", "finetune.lr=0.001"]))
    assert dict(one.sweep) == {"finetune.lr": (0.001,)}
