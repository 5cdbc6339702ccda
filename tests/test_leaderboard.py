"""The fair benchmark: forget scenarios, equal-budget tuning and the leaderboard.

One small leaderboard (the tiny synthetic task, one scenario, two unlearners, two trials,
two seeds) is run once for the module; the shard, kill/resume and plug-in tests run their
own cells against it and compare results made on this machine in this run (bitwise: the
same programs on the same CPU).
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from jaxunlearn import leaderboard as lb
from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.scenarios import scenario_rule
from jaxunlearn.data.sources import build_task, make_synthetic
from jaxunlearn.data.user import task_from_arrays
from jaxunlearn.hparams import check_hyperparameters
from jaxunlearn.tuning import (
    TrialResult,
    TuningResult,
    apply_tuned,
    draw_trials,
    epoch_cap,
    tune,
    tuning_config,
    write_tuned,
)
from jaxunlearn.unlearn import PluginError, Range, Unlearner
from tests.helpers import TINY, registered

# one worker runs the module: the board fixture once, the tests beside it reuse its programs
pytestmark = pytest.mark.xdist_group("leaderboard")
PLUGIN = "tests/plugins/noisy_finetune.py"
SETTINGS = lb.BenchSettings(
    scenarios=("random-10",), unlearners=("finetune", "ssd"), trials=2, tune_seeds=2, seeds=2, models=0
)
TASKS = [lb.BenchTask("tiny", TINY)]


def quiet(message: str) -> None:
    del message


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    lb.run_leaderboard(out, TASKS, SETTINGS, progress=False, log=quiet)
    return out


def cell_results(out) -> dict:
    return {str(p.relative_to(out)): lb.measured(json.loads(p.read_text())) for p in out.glob("cells/*/*/*.json")}


# ---------------------------------------------------------------- scenarios
def test_scenarios_give_rules_and_the_random_draws_differ():
    raw = make_synthetic()
    assert scenario_rule("random-10", raw, 0)[0] == "random:0.1@0"
    tuning, scoring = (build_task(raw, scenario_rule("random-10", raw, d)[0]) for d in (1, 0))
    assert int(tuning.train.forget.sum()) == int(scoring.train.forget.sum()) == 72
    assert not np.array_equal(np.asarray(tuning.train.forget), np.asarray(scoring.train.forget))
    rule, what = scenario_rule("subpopulation", raw)
    assert rule == "feature[0]>1" and "x0 > 1" in what
    x = raw.splits["train"][0]
    assert np.array_equal(np.asarray(build_task(raw, rule).train.forget) > 0.5, x[:, 0] > 1)
    assert scenario_rule("region", raw)[0] == "quantile>=0.8"  # synthetic's default is a mask, not a region
    assert scenario_rule("region:label>=2", raw)[0] == "label>=2"


def test_position_rule_takes_a_window_of_each_split():
    raw = make_synthetic(n=1000)
    task = build_task(raw, "position:0.4:0.5")
    for split, n in (("train", 600), ("val", 200), ("test", 200)):
        mask = np.asarray(getattr(task, split).forget) > 0.5
        assert np.flatnonzero(mask).tolist() == list(range(int(0.4 * n), int(0.5 * n)))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nowhere", "unknown scenario 'nowhere'"),
        ("region:", "give a rule after the colon"),
        ("region:label=>3", "unknown forget rule"),
        ("random-10:label>3", "takes no rule"),
    ],
)
def test_bad_scenarios_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        scenario_rule(spec, make_synthetic())


def test_a_dataset_without_a_subpopulation_says_how_to_give_one():
    raw = dataclasses.replace(make_synthetic(), subpopulation=None)
    with pytest.raises(ValueError, match="subpopulation:feature"):
        scenario_rule("subpopulation", raw)


# ---------------------------------------------------------------- trials and their draws
def test_trials_are_drawn_within_the_declared_ranges_and_the_cost_cap():
    trials = draw_trials("neggrad", 32, train_epochs=20, seed=3)
    assert len({t.key() for t in trials}) == 32
    assert trials == draw_trials("neggrad", 32, train_epochs=20, seed=3)  # deterministic
    assert epoch_cap(20) == 4
    for t in trials:
        assert 1e-5 <= t.hp["lr"] <= 0.1 and 0 <= t.hp["retain_weight"] <= 1
        assert 1 <= t.settings["epochs"] <= 4
    assert {t.settings["epochs"] for t in trials} == {1, 2, 3, 4}
    lrs = np.log10([t.hp["lr"] for t in trials])
    assert lrs.min() < -3.5 and lrs.max() > -2.5  # log-uniform over four decades, not bunched at the top
    assert draw_trials("sisa", 8, 20) == [draw_trials("sisa", 1, 20)[0]]  # no ranges: its defaults, once


def test_a_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="trial budget must be a positive integer"):
        draw_trials("finetune", 0, 10)
    with pytest.raises(ValueError, match="trials must be a positive integer"):
        lb.BenchSettings(trials=0)


@pytest.mark.parametrize(
    "search, message",
    [
        ({"lr": Range(1e-5, 1.0, log=True)}, "leaves its bounds"),
        ({"beta": Range(0.0, 1.0)}, "neither a hyperparameter"),
        ({"lr": Range(1, None, integer=True)}, "integer Ranges are for settings"),
        ({"epochs": Range(0.0, 1.0)}, "only integer settings"),
    ],
)
def test_bad_search_declarations_are_refused(search, message):
    @dataclasses.dataclass(frozen=True)
    class Settings:
        epochs: int = 1

    bounds = {"lr": (1e-6, 0.5)}
    bad = Unlearner(
        "searchy", lambda model, task, cfg, plan, settings: None, {"lr": 1e-3}, bounds, Settings, search=search
    )
    with pytest.raises(PluginError, match=message):
        unlearn.register(bad, source="my_plugin")


def test_trials_become_rows_and_bad_trials_are_refused():
    cfg = dataclasses.replace(TINY, unlearners=("neggrad",), trials={"neggrad": [{"lr": 1e-3}, {"lr": 2e-3}]})
    check_hyperparameters(cfg)
    with pytest.raises(ValueError, match="points must differ"):
        check_hyperparameters(dataclasses.replace(cfg, trials={"neggrad": [{"lr": 1e-3}, {"lr": 1e-3}]}))
    with pytest.raises(ValueError, match="must lie in"):
        check_hyperparameters(dataclasses.replace(cfg, trials={"neggrad": [{"retain_weight": 2.0}]}))
    with pytest.raises(ValueError, match="also swept"):
        check_hyperparameters(dataclasses.replace(cfg, sweep={"neggrad.lr": (1e-3, 1e-2)}))
    with pytest.raises(ValueError, match="not among the unlearners"):
        check_hyperparameters(dataclasses.replace(cfg, trials={"retrain": [{"lr": 1e-3}]}))


# ---------------------------------------------------------------- tuning
def poisoned_tasks():
    raw = make_synthetic()  # the shapes of TINY's task: the board's programs serve these tunings
    splits = {s: (x, y) for s, (x, y) in raw.splits.items()}
    clean = task_from_arrays(splits["train"], splits["val"], splits["test"], "random:0.1@1")
    x_test, y_test = splits["test"]
    poison = np.random.default_rng(0).normal(1e3, 1e3, y_test.shape).astype(y_test.dtype)
    poisoned = task_from_arrays(splits["train"], splits["val"], (x_test, poison), "random:0.1@1")
    return clean, poisoned


def test_tuning_never_reads_test_rows():
    """Poisoned test targets change nothing tuning sees: the same points, the same scores."""
    cfg = tuning_config(dataclasses.replace(TINY, unlearners=("finetune",), seeds=2))
    results = [tune(cfg, 3, task=task, progress=False, log=quiet) for task in poisoned_tasks()]
    clean, poisoned = ([(t.row, t.objective, t.gaps) for t in r.trials["finetune"]] for r in results)
    assert clean == poisoned
    assert results[0].tuned_values() == results[1].tuned_values()
    assert results[0].chosen["finetune"].objective == min(t.objective for t in results[0].trials["finetune"])


def test_tuned_values_files_apply_only_to_their_task(tmp_path, board_dir):
    record = json.loads(next(board_dir.glob("cells/tiny/random-10/finetune.json")).read_text())
    assert record["tuned"]["hp"]["finetune.lr"] > 0

    chosen = TrialResult("finetune", "finetune[lr=0.003]", {"lr": 0.003}, {"epochs": 1}, 0.1, {}, 0.2)
    result = TuningResult({}, {"finetune": [chosen]}, {"finetune": chosen}, [], {})
    cfg = dataclasses.replace(TINY, unlearners=("finetune",), settings=())
    path = write_tuned(tmp_path / "tuned.json", result, cfg, "region")
    applied = apply_tuned(cfg, path, "region")
    assert dict(applied.hp)["finetune.lr"] == 0.003 and applied.settings_of("finetune") == {"epochs": 1}
    with pytest.raises(ValueError, match=r"tuned for another task.*train_epochs"):
        apply_tuned(dataclasses.replace(cfg, train_epochs=9), path, "region")
    with pytest.raises(ValueError, match=r"tuned for another task.*scenario"):
        apply_tuned(cfg, path, "random-10")
    given = dataclasses.replace(cfg, settings={"finetune": {"epochs": 3}}, hp={"finetune.lr": 0.01})
    assert apply_tuned(given, path, "region").settings_of("finetune") == {"epochs": 3}  # what is given wins
    assert dict(apply_tuned(given, path, "region").hp)["finetune.lr"] == 0.01


# ---------------------------------------------------------------- the leaderboard
@pytest.mark.heavy(40)
def test_the_leaderboard_ranks_every_cell_with_its_references(board_dir):
    board = json.loads((board_dir / "leaderboard.json").read_text())
    assert board["cells"] == 2 and set(board["mean_rank"]) == {"finetune", "ssd"}
    table = board["tables"]["tiny / random-10"]
    assert sorted(table["ranking"]) == ["finetune", "ssd"]
    scores = [table["summary"][r]["score"]["mean"] for r in table["ranking"]]
    assert scores == sorted(scores)
    assert table["summary"]["retrain"]["score"]["mean"] == 0.0
    assert table["summary"][lb.NOISE_FLOOR_ROW]["score"]["mean"] > 0.0
    text = (board_dir / "leaderboard.md").read_text()
    assert "## tiny / random-10" in text and "1. " in text and "compiling" in text
    record = json.loads((board_dir / "cells/tiny/random-10/ssd.json").read_text())
    assert record["rules"] == {"tuning": "random:0.1@1", "score": "random:0.1@0"}
    assert record["tuning"]["config"]["seed"] != record["score_config"]["seed"]  # fresh seeds for the scores
    folders = [d for d in board_dir.glob("checkpoints/*/*/*/*") if d.is_dir()]
    saved = {d.name.partition("-")[0] for d in folders}
    assert saved == {"original", "retrain"}  # the trials' and scored unlearners' models are never saved
    # both cells scored against one original and retrain, whose metrics were measured once
    assert len(list(board_dir.glob("checkpoints/*/*/score/reference-metrics-*.json"))) == 1


def test_shards_merge_into_the_single_process_result(tmp_path, board_dir):
    shards = [tmp_path / "a", tmp_path / "b"]
    for index, out in enumerate(shards):
        settings = dataclasses.replace(SETTINGS, shard=(index, 2))
        lb.run_leaderboard(out, TASKS, settings, progress=False, log=quiet)
        assert len(cell_results(out)) == 1
    from jaxunlearn.cli import main

    merged = tmp_path / "merged"
    assert main(["leaderboard", "--merge", str(shards[0]), str(shards[1]), "--out", str(merged)]) == 0
    assert cell_results(merged) == cell_results(board_dir)
    ours = json.loads((merged / "leaderboard.json").read_text())
    theirs = json.loads((board_dir / "leaderboard.json").read_text())
    assert ours["mean_rank"] == theirs["mean_rank"]
    for key, table in ours["tables"].items():
        assert table["ranking"] == theirs["tables"][key]["ranking"]
        assert table["summary"]["finetune"]["score"] == theirs["tables"][key]["summary"]["finetune"]["score"]


def test_a_process_runs_one_unlearners_cells_together_and_shards_keep_the_table_order():
    settings = dataclasses.replace(SETTINGS, scenarios=("region", "random-10"), unlearners=("finetune", "ssd", "scrub"))
    tasks = [lb.BenchTask("a", TINY), lb.BenchTask("b", TINY)]
    cells = lb.plan_cells(tasks, settings)
    assert [(c.scenario, c.unlearner) for c in cells[:4]] == [
        ("region", "finetune"),
        ("region", "ssd"),
        ("region", "scrub"),
        ("random-10", "finetune"),
    ]
    order = lb.run_order(cells, settings)
    assert sorted(order, key=cells.index) == cells
    assert [(c.task, c.unlearner, c.scenario) for c in order[:4]] == [
        ("a", "finetune", "region"),
        ("a", "finetune", "random-10"),
        ("a", "ssd", "region"),
        ("a", "ssd", "random-10"),
    ]
    assert {c.task for c in order[6:]} == {"b"}
    shard = [c for k, c in enumerate(cells) if k % 2 == 1]
    assert set(lb.run_order(shard, settings)) == set(shard)


def test_a_killed_leaderboard_loses_one_cell_and_resumes(tmp_path, board_dir, monkeypatch):
    out = tmp_path / "board"
    shutil.copytree(board_dir, out)
    for path in out.glob("cells/*/*/*.json"):
        path.unlink()
    real, calls = lb.run_cell, []

    def killed_in_second_cell(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lb, "run_cell", killed_in_second_cell)
    with pytest.raises(KeyboardInterrupt):
        lb.run_leaderboard(out, TASKS, SETTINGS, progress=False, log=quiet)
    assert len(cell_results(out)) == 1  # the finished cell is saved; only the killed one is lost
    monkeypatch.setattr(lb, "run_cell", real)
    lines: list[str] = []
    lb.run_leaderboard(out, TASKS, SETTINGS, progress=False, log=lines.append)
    assert "2 cells, 2 in shard 0/1, 1 to run" in lines[0]
    assert cell_results(out) == cell_results(board_dir)


def test_a_plugin_joins_the_leaderboard_without_recomputing_the_others(tmp_path, board_dir):
    out = tmp_path / "board"
    shutil.copytree(board_dir, out)
    before = {p: p.read_bytes() for p in out.glob("cells/*/*/*.json")}
    with registered([]):
        unlearn.load_plugin(PLUGIN)
        lines = []
        settings = dataclasses.replace(SETTINGS, unlearners=("finetune", "noisy_finetune"))
        board = lb.run_leaderboard(out, TASKS, settings, progress=False, log=lines.append)
    assert "1 to run" in lines[0]
    assert any("original: loaded" in line for line in lines) and any("retrain: loaded" in line for line in lines)
    assert {p: p.read_bytes() for p in before} == before
    table = board["tables"]["tiny / random-10"]
    assert sorted(table["ranking"]) == ["finetune", "noisy_finetune", "ssd"]
    assert table["defaults_only"] == ["noisy_finetune"]
    assert "Scored at their defaults (no search space declared): noisy_finetune" in (out / "leaderboard.md").read_text()


@pytest.mark.heavy(30)
def test_per_example_tests_join_scored_cells_and_train_their_references_once(tmp_path, board_dir):
    out = tmp_path / "board"
    shutil.copytree(board_dir, out)
    settings = dataclasses.replace(SETTINGS, models=8, groups=4)
    lines: list[str] = []
    board = lb.run_leaderboard(out, TASKS, settings, progress=False, log=lines.append)
    assert "0 to run" in lines[0]  # the scored cells are kept: only their per-example tests run
    assert cell_results(out) == cell_results(board_dir)
    # the second cell loads the original, both retrained sets and the control shadows
    loaded = {line.partition(":")[0] for line in lines if ": loaded from " in line}
    assert {"original", "retrain", "retrain-floor", "shadows-original", "shadows-retrain"} <= loaded
    record = json.loads((out / "cells/tiny/random-10/ssd.json").read_text())
    assert record["per_example"]["models"] == 8 and set(record["per_example"]) >= {"neurips23", "ulira"}
    rows = board["tables"]["tiny / random-10"]["per_example"]["rows"]
    assert set(rows) == {"finetune", "ssd", "retrain (noise floor)", "original"}
    for metrics in rows.values():
        assert 0.0 <= metrics["forgetting_quality"] <= 1.0 and 0.0 <= metrics["ulira_auc"] <= 1.0
    assert set(board["mean_rank_by_f"]) == {"finetune", "ssd"}
    text = (out / "leaderboard.md").read_text()
    assert "Per-example tests (8 models per row" in text and "mean rank by F" in text
    assert (out / lb.FIGURE_FILE).stat().st_size > 0
    again: list[str] = []
    lb.run_leaderboard(out, TASKS, settings, progress=False, log=again.append)
    assert not any(line.startswith("per-example tests") for line in again)  # done once, never again
    # tests made before the grid unit and the spread metrics existed are rescored from the
    # saved models: the numbers come back bit for bit, and the seconds of the training stay
    path = out / "cells/tiny/random-10/ssd.json"
    before = json.loads(path.read_text())["per_example"]
    assert before["grid_unit"] == "reference-std"
    older = json.loads(path.read_text())
    del older["per_example"]["grid_unit"]  # read as "target": rescored, although no metric is missing
    path.write_text(json.dumps(older))
    rescored: list[str] = []
    lb.run_leaderboard(out, TASKS, settings, progress=False, log=rescored.append)
    assert [line for line in rescored if line.startswith("per-example")] == [
        "per-example tests rescored from the saved models (8 models): tiny / random-10 / ssd"
    ]
    assert json.loads(path.read_text())["per_example"] == before
    for metrics in older["per_example"]["neurips23"].values():
        del metrics["spread_ratio"], metrics["mean_shift"]
    older["per_example"]["grid_unit"] = "reference-std"
    path.write_text(json.dumps(older))
    refreshed: list[str] = []
    lb.run_leaderboard(out, TASKS, settings, progress=False, log=refreshed.append)
    assert [line for line in refreshed if line.startswith("per-example")] == [
        "per-example tests rescored from the saved models (8 models): tiny / random-10 / ssd"
    ]
    assert json.loads(path.read_text())["per_example"] == before  # nothing retrained: seconds kept too


def test_cells_scored_with_other_task_settings_are_refused(tmp_path, board_dir):
    out = tmp_path / "board"
    shutil.copytree(board_dir, out)
    longer = [lb.BenchTask("tiny", TINY.replace(train_epochs=4))]
    with pytest.raises(ValueError, match=r"random-10/finetune.json was scored with other settings.*train_epochs: 3"):
        lb.run_leaderboard(out, longer, SETTINGS, progress=False, log=quiet)
    with pytest.raises(ValueError, match="seeds: 2 there, 3 now"):
        lb.run_leaderboard(out, TASKS, dataclasses.replace(SETTINGS, seeds=3), progress=False, log=quiet)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"models": 1}, "models must be >= 2"),
        ({"models": 10, "groups": 4}, r"models \(10\) must be a multiple of groups"),
        ({"models": -1}, "models must be 0"),
        ({"shard": (2, 2)}, "shard must be INDEX/COUNT"),
        ({"scenarios": ("nowhere",)}, "unknown scenario"),
        ({"unlearners": ("nobody",)}, "unknown unlearner"),
        ({"seeds": 0}, "seeds must be a positive integer"),
    ],
)
def test_bad_benchmark_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lb.BenchSettings(**kwargs)


def test_a_scenario_that_leaves_nothing_to_forget_is_refused_before_compiling(tmp_path):
    settings = dataclasses.replace(SETTINGS, scenarios=("region:label>1000",))
    with pytest.raises(ValueError, match=r"task 'tiny', scenario 'region:label>1000'.*forget set is empty"):
        lb.run_leaderboard(tmp_path, TASKS, settings, progress=False, log=quiet)
    assert not (tmp_path / "cells").exists()


def test_study_config_trials_round_trip():
    cfg = StudyConfig(unlearners=("ssd",), trials={"ssd": [{"dampening": 0.5}]})
    assert StudyConfig(**{**cfg.to_dict(), "model_kwargs": (), "dataset_kwargs": ()}).trials == cfg.trials


# ---------------------------------------------------------------- sequential requests
def test_sequential_request_j_is_judged_against_retraining_without_requests_1_to_j():
    from jaxunlearn.data.forget_rules import Mask
    from jaxunlearn.sequential import REQUEST_SEED_STRIDE, request_masks, run_sequential
    from jaxunlearn.study import predict_rows, train_study

    cfg = TINY.replace(seeds=2)
    result = run_sequential(cfg, "finetune", requests=2, fraction=0.05, progress=False, log=quiet)
    assert [s.forgotten["train"] for s in result.steps] == [36, 72]
    last = result.steps[-1]
    raw = make_synthetic()
    masks = request_masks(raw, 2, 0.05)
    both = {s: masks[0][s] | masks[1][s] for s in masks[0]}
    assert not (masks[0]["train"] & masks[1]["train"]).any()  # disjoint requests
    reference = train_study(
        cfg.replace(seed=cfg.seed + REQUEST_SEED_STRIDE, unlearners=()),
        False,
        quiet,
        build_task(raw, Mask(both)),  # every row of requests 1 and 2 forgotten, none dropped
    )
    direct = predict_rows(
        {"retrain": reference.stages["retrain"]}, reference.task, reference.model, reference.plan, ("train", "test")
    )
    for split in ("train", "test"):
        np.testing.assert_allclose(last.predictions["retrain"][split], direct["retrain"][split], rtol=1e-5, atol=1e-6)
    # the unlearner of request 2 started from request 1's models, not from the original
    first = result.steps[0].predictions["finetune"]["train"]
    assert not np.allclose(last.predictions["finetune"]["train"], result.steps[0].predictions["original"]["train"])
    assert np.array_equal(result.steps[0].predictions["original"]["train"], last.predictions["original"]["train"])
    assert first.shape == last.predictions["finetune"]["train"].shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"requests": 0}, "requests must be a positive integer"),
        ({"fraction": 0.5, "requests": 2}, "leave no train row to keep"),
        ({"unlearner": "sisa"}, "sharded unlearner"),
        ({"unlearner": "nobody"}, "unknown unlearner"),
    ],
)
def test_bad_sequential_requests_are_refused(kwargs, message):
    from jaxunlearn.sequential import run_sequential

    args = {"unlearner": "finetune", "requests": 2, "fraction": 0.05, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_sequential(TINY, args.pop("unlearner"), progress=False, log=quiet, **args)


def test_sequential_requests_join_the_leaderboard_and_sharded_unlearners_are_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "SEQUENTIAL_REQUESTS", 2)  # two requests keep the test short
    settings = dataclasses.replace(SETTINGS, scenarios=(lb.SEQUENTIAL,), unlearners=("finetune", "sisa"))
    lines: list[str] = []
    board = lb.run_leaderboard(tmp_path, TASKS, settings, progress=False, log=lines.append)
    assert any(line.startswith("not run: tiny / sequential / sisa") for line in lines)
    table = board["tables"]["tiny / sequential"]
    assert table["ranking"] == ["finetune"] and len(table["requests"]["finetune"]) == 2
    record = json.loads((tmp_path / "cells/tiny/sequential/finetune.json").read_text())
    assert record["task"]["forgotten"]["train"] == 2 * 18  # 2.5% of 720 training rows, twice
    assert "Gap to retraining after each request" in (tmp_path / "leaderboard.md").read_text()
    # per-example tests join the sequential cell (after its last request, NeurIPS'23 only)
    tested = lb.run_leaderboard(tmp_path, TASKS, dataclasses.replace(settings, models=8, groups=4), False, quiet)
    rows = tested["tables"]["tiny / sequential"]["per_example"]["rows"]
    assert set(rows) == {"finetune", "retrain (noise floor)", "original"}
    assert "forgetting_quality" in rows["finetune"] and not any(k.startswith("ulira") for k in rows["finetune"])
    saved = {p.name.rsplit("-", 1)[0] for p in (tmp_path / "checkpoints/tiny/sequential/neurips23").iterdir()}
    assert {"original", "retrain", "retrain-floor", "finetune-request1", "finetune-request2"} <= saved


def test_the_sequential_per_example_test_chains_the_requests_against_retraining_without_all(tmp_path, monkeypatch):
    from jaxunlearn.evaluation import EvaluationConfig
    from jaxunlearn.evaluation.blocks import BlockRunner
    from jaxunlearn.sequential import evaluate_sequential, request_masks

    calls: dict[str, tuple] = {}
    real = BlockRunner.run

    def spy(self, name, stage, task, first, count, original=None, description=None, rows=None):
        result = real(self, name, stage, task, first, count, original, description, rows)
        calls[name] = (task, first, count, original, result)
        return result

    monkeypatch.setattr(BlockRunner, "run", spy)
    n = 4
    result, _ = evaluate_sequential(
        TINY.replace(unlearners=("finetune",)),
        EvaluationConfig("neurips23", models=n),
        requests=2,
        fraction=0.05,
        draw=3,
        checkpoint_dir=tmp_path,
        progress=False,
        log=quiet,
    )
    masks = request_masks(make_synthetic(), 2, 0.05, 3)
    first_rows, second_rows = (np.flatnonzero(m["train"]) for m in masks)
    assert result.example_rows == sorted([*first_rows, *second_rows])  # judged on both requests' rows

    def trained_on(task) -> set[int]:  # the rows a stage trains on: the task's rows but its forget rows
        rows = np.arange(task.train.size) if task.train.rows is None else np.asarray(task.train.rows)
        return set(rows[np.asarray(task.train.forget)[rows] < 0.5].tolist())

    everything = set(range(make_synthetic().splits["train"][1].shape[0]))
    assert trained_on(calls["retrain"][0]) == everything - set(first_rows) - set(second_rows)
    assert calls["retrain-floor"][1:3] == (n, n)
    request1, request2 = calls["finetune-request1"], calls["finetune-request2"]
    assert set(np.flatnonzero(np.asarray(request2[0].train.forget))) == set(second_rows)
    assert not set(second_rows) & set(first_rows) and first_rows[0] not in trained_on(request2[0])
    assert request1[3] is calls["original"][4] and request2[3] is request1[4]  # the chain
    assert (request1[1], request2[1]) == (0, n)  # request 2 draws other seeds: no key reuse
    assert set(result.rows) == {"original (do nothing)", "retrain (2nd set: noise floor)", "finetune"}


def test_the_command_line_refuses_mixed_forget_options_and_foreign_tuned_files(tmp_path, capsys):
    from jaxunlearn.cli import main

    chosen = TrialResult("finetune", "finetune[lr=0.003]", {"lr": 0.003}, {"epochs": 1}, 0.1, {}, 0.2)
    result = TuningResult({}, {"finetune": [chosen]}, {"finetune": chosen}, [], {})
    path = write_tuned(tmp_path / "tuned.json", result, StudyConfig(dataset="diabetes", train_epochs=5), "random-10")
    cases = [
        (["run", "--dataset", "diabetes", "--scenario", "random-10", "--tuned", str(path)], "train_epochs: 5 there"),
        (["run", "--scenario", "random-10", "--forget", "label>3"], "give --scenario or --forget, not both"),
        (["tune", "--tuned", str(path)], "does not take --tuned"),
        (["run", "--scenario", "nowhere"], "unknown scenario 'nowhere'"),
        (["leaderboard", "--shard", "3/2"], "shard must be INDEX/COUNT"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
