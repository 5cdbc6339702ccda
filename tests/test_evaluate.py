"""The many-model evaluations (jaxunlearn.evaluation): the NeurIPS'23 protocol and U-LiRA
end to end on the tiny task, memory-sized chunks, checkpoints and resuming a killed run,
and the CLI command. The protocols' statistics have their own tests (test_epsilon.py,
test_lira.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY, tiny_task, with_

from jaxunlearn.checkpoints import CheckpointStore
from jaxunlearn.evaluation import EvaluationConfig, run_evaluation
from jaxunlearn.evaluation.neurips23 import FLOOR_ROW, ORIGINAL_ROW
from jaxunlearn.evaluation.ulira import candidate_masks, shadow_rows
from jaxunlearn.memory import chunk_size, device_budget, parse_bytes
from jaxunlearn.metrics.epsilon import epsilon_points, few_models_warning

# The tests below share module-scoped runs: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("evaluate")

CFG = with_(TINY, unlearners=("finetune",))
MODELS = 6


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def task():
    return tiny_task()


@pytest.fixture(scope="module")
def neurips(task, tmp_path_factory):
    """One neurips23 run of 6 models per row in calls of 4 (the last padded), checkpointed."""
    folder = tmp_path_factory.mktemp("neurips23")
    result, run = run_evaluation(
        CFG,
        EvaluationConfig("neurips23", models=MODELS, chunk=4, attack_models=2),
        task=task,
        checkpoint_dir=folder,
        progress=False,
        log=quiet,
    )
    return result, run, folder


def test_neurips23_rows_controls_and_shapes(neurips, task):
    result, run, _ = neurips
    forget_rows = np.flatnonzero(np.asarray(task.train.forget) > 0.5)
    assert result.rows == [ORIGINAL_ROW, FLOOR_ROW, "finetune"]
    assert result.example_rows == forget_rows.tolist()
    for row in result.rows:
        eps = np.asarray(result.per_example[row]["eps"])
        assert eps.shape == forget_rows.shape and np.all((eps >= 0) & (eps <= 50))
        m = result.metrics[row]
        assert 0.0 <= m["forgetting_quality"] <= 1.0 and 0.0 <= m["svc_member_rate"] <= 1.0
        assert sum(result.histograms[row]["counts"]) + result.histograms[row]["at_or_beyond_cutoff"] == forget_rows.size
    # Doing nothing gives N identical models: a point mass, capped eps, no points at all.
    assert result.metrics[ORIGINAL_ROW]["forgetting_quality"] == 0.0
    assert result.metrics[ORIGINAL_ROW]["eps_capped"] == 1.0
    # Two independent sets of retrained models are closer than the original is to either.
    assert result.metrics[FLOOR_ROW]["forgetting_quality"] > 0.0
    assert run["chunks"] == {"original": 1, "retrain": 4, "finetune": 4}
    assert result.timings["retrain"]["models"] == MODELS and result.timings["retrain-floor"]["models"] == MODELS


def test_neurips23_table_notes_and_warning_agree(neurips):
    """The table's headers are its column list's; 'eps at cap' is the share of examples that
    earn no point; 6 models per row are too few for the points, which the result says."""
    result, _, _ = neurips
    header = [h.strip() for h in result.table.splitlines()[0].strip("|").split("|")]
    assert header == [c.header for c in result.columns]
    for row in result.rows:
        eps = np.asarray(result.per_example[row]["eps"])
        assert result.metrics[row]["eps_capped"] == np.mean(epsilon_points(eps, MODELS) == 0), row
    warning = few_models_warning(MODELS)
    assert warning is not None and result.warnings == [warning]
    assert any(warning in note for note in result.notes)


def test_chunks_of_any_size_give_the_same_models(neurips, task):
    """6 models in calls of 4 (the last padded) == in the calls a tiny memory limit forces:
    bitwise, seed for seed (the "map" strategy runs seeds one after another), for calls of
    2 or more models; a one-model call (a loop of one step, which XLA may fuse otherwise:
    ``run_in_chunks``) to float rounding. Here (2-core Zen 4, jax 0.10.2, the epoch carry
    donated) the limit gives 2 retrained and 5 fine-tuned models per call. (The study test
    below compares chunks with one call.)"""
    result, _, _ = neurips
    messages = []
    squeezed, run = run_evaluation(
        CFG,
        EvaluationConfig("neurips23", models=MODELS, attack_models=2, memory_limit=parse_bytes("55KB")),
        task=task,
        progress=False,
        log=messages.append,
    )
    assert 1 <= run["chunks"]["retrain"] < MODELS, run["chunks"]
    assert any("per call" in m for m in messages)
    rtol = 0.0 if min(run["chunks"]["retrain"], run["chunks"]["finetune"]) >= 2 else 1e-6
    for row in result.rows:
        np.testing.assert_allclose(squeezed.per_example[row]["eps"], result.per_example[row]["eps"], rtol=rtol)
        np.testing.assert_allclose(squeezed.metrics[row]["retain_mae"], result.metrics[row]["retain_mae"], rtol=rtol)


def test_a_killed_evaluation_resumes_losing_one_block(neurips, task, tmp_path, monkeypatch):
    """A kill while the finetune block is being committed: the resumed run loads every
    earlier block, redoes only that one, and scores exactly what the uninterrupted run did."""
    result, _, _ = neurips
    folder = tmp_path / "killed"
    real_commit = CheckpointStore._commit

    def commit_or_die(self, stage, *args):
        if stage == "finetune":
            raise KeyboardInterrupt("killed while committing finetune")
        return real_commit(self, stage, *args)

    monkeypatch.setattr(CheckpointStore, "_commit", commit_or_die)
    ecfg = EvaluationConfig("neurips23", models=MODELS, chunk=4, attack_models=2)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(CFG, ecfg, task=task, checkpoint_dir=folder, progress=False, log=quiet)
    monkeypatch.setattr(CheckpointStore, "_commit", real_commit)
    messages = []
    resumed, _ = run_evaluation(
        CFG, ecfg, task=task, checkpoint_dir=folder, resume=True, progress=False, log=messages.append
    )
    loaded = {name for name, t in resumed.timings.items() if t["loaded"]}
    assert loaded == {"original", "retrain", "retrain-floor"}
    # finetune's two calls (4 + 2 models) were saved before the kill: both load, none reruns
    assert any(m.startswith("finetune: seeds 0-3 loaded from") for m in messages), messages
    assert any(m.startswith("finetune: seeds 4-5 loaded from") for m in messages), messages
    assert not any("done and saved" in m for m in messages), messages
    assert not list(folder.glob(".tmp-*")), "the interrupted block's temporary folder was not cleared"
    assert not list(folder.glob("*_seeds*")), "a block's parts are deleted once it is saved whole"
    for row in result.rows:
        assert resumed.per_example[row]["eps"] == result.per_example[row]["eps"], row


def test_candidate_masks_are_balanced_complementary_halves():
    masks = candidate_masks(10, 6, seed=3)
    assert masks.shape == (6, 10)
    assert np.all(masks.sum(axis=1) == 5)  # every group holds half the candidates
    assert np.all(masks.sum(axis=0) == 3)  # every candidate is IN in half the groups
    assert np.array_equal(masks[0], ~masks[1]) and not np.array_equal(masks[0], masks[2])
    assert np.array_equal(masks, candidate_masks(10, 6, seed=3))


def test_shadow_rows_are_the_retain_rows_then_the_groups_candidates(task):
    forget = np.asarray(task.train.forget) > 0.5
    retain, candidates = np.flatnonzero(~forget), np.flatnonzero(forget)[:4]
    masks = candidate_masks(4, 2, seed=0)
    rows = shadow_rows(retain, candidates, masks, per_group=3)
    assert rows.shape == (6, retain.size + 2) and rows.dtype == np.int32
    for shadow in range(6):
        group = shadow // 3
        assert np.array_equal(rows[shadow], np.r_[retain, candidates[masks[group]]])


def test_ulira_end_to_end_with_controls(task):
    result, _ = run_evaluation(CFG, EvaluationConfig("ulira", models=8, groups=4), task=task, progress=False, log=quiet)
    candidates = int((np.asarray(task.train.forget) > 0.5).sum()) // 2 * 2
    assert result.rows == ["retrain", "original", "finetune"]
    assert len(result.example_rows) == candidates
    for row in result.rows:
        m = result.metrics[row]
        assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["tpr_at_1pct_fpr"] <= 1.0
        assert len(result.per_example[row]["auc"]) == candidates
    # "exposed" is measured against the retrain control's largest per-row AUC: it has none.
    assert result.metrics["retrain"]["exposed_rows"] == 0
    # every stage trains its 8 shadows of 4 groups in one block
    assert {f"shadows-{s}" for s in ("original", "retrain", "finetune")} == set(result.timings)
    assert all(t["models"] == 8 for t in result.timings.values())
    header = [h.strip() for h in result.table.splitlines()[0].strip("|").split("|")]
    assert header == [c.header for c in result.columns] and result.warnings == []


def test_evaluate_command_writes_the_report_and_resumes(tmp_path, capsys):
    from jaxunlearn.cli import main

    args = [
        "evaluate",
        "--protocol",
        "neurips23",
        "--models",
        "4",
        "--attack-models",
        "2",
        "--dataset",
        "synthetic",
        "--dataset-arg",
        "n=240",
        "--dataset-arg",
        "dim=4",
        "--model-arg",
        "hidden=16,16",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--unlearners",
        "finetune",
        "--set",
        "finetune.epochs=2",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["protocol"] == "neurips23" and data["evaluation"]["models"] == 4
    assert "groups" not in data["evaluation"]  # a ulira setting: neurips23 does not read it
    assert set(data["metrics"]) == {ORIGINAL_ROW, FLOOR_ROW, "finetune"}
    assert data["warnings"] == [few_models_warning(4)]
    assert {c["header"] for c in data["columns"]} >= {"F", "eps at cap", "time / retrain"}
    md, out = (tmp_path / "results.md").read_text(), capsys.readouterr().out
    assert "| finetune |" in md
    for text in (md, out):  # what it prints is what results.md holds: the warning and every definition
        assert f"WARNING: {data['warnings'][0]}" in text
        assert all(f"- `{c['header']}`: {c['definition']}" in text for c in data["columns"])
    assert "- groups:" not in md
    assert main([*args, "--resume"]) == 0
    assert capsys.readouterr().out.count("loaded from") == 4
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] == data["metrics"]


def test_evaluate_refuses_bad_settings(capsys):
    from jaxunlearn.cli import main

    assert main(["evaluate", "--protocol", "ulira", "--models", "10", "--groups", "4"]) == 2
    assert "multiple of groups" in capsys.readouterr().err
    assert main(["evaluate", "--sweep", "finetune.lr=0.1,0.2"]) == 2
    assert "not a sweep" in capsys.readouterr().err
    with pytest.raises(ValueError, match="groups must be even"):
        EvaluationConfig("ulira", models=6, groups=3)
    with pytest.raises(ValueError, match="unknown protocol"):
        EvaluationConfig("lira")


def test_chunk_size_from_a_linear_footprint():
    def bytes_for(n):  # 1000 fixed + 100 per seed
        return 1000 + 100 * n

    assert chunk_size(64, bytes_for, budget=10**6) == (64, 7400)  # fits: the full count, one compile
    size, planned = chunk_size(64, bytes_for, budget=3000)
    assert size == 20 and planned == 3000
    assert chunk_size(64, bytes_for, budget=500) == (1, 1100)  # nothing smaller than one seed
    assert chunk_size(64, lambda n: None, budget=1) == (64, None)  # no memory analysis: one call


def test_memory_sizes_and_the_budget_override(monkeypatch):
    assert parse_bytes("2GB") == 2 * 2**30 and parse_bytes("512 KiB") == 512 * 1024 and parse_bytes(4096) == 4096
    for bad in ("lots", "-1", "3 parsecs", 0):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    monkeypatch.setenv("JAXUNLEARN_MEMORY_LIMIT", "1MB")
    assert device_budget() == 2**20
    assert device_budget("2MB") == 2 * 2**20
    monkeypatch.delenv("JAXUNLEARN_MEMORY_LIMIT")
    assert device_budget() > 2**20


def test_a_study_whose_seeds_do_not_fit_runs_in_chunks_with_the_same_results(task, monkeypatch):
    from jaxunlearn.study import run_study

    cfg = with_(CFG, unlearners=())  # 3 seeds; the reference stages chunk as any other
    whole = run_study(cfg, progress=False, log=quiet, task=task)
    monkeypatch.setenv("JAXUNLEARN_MEMORY_LIMIT", "40KB")
    messages = []
    squeezed = run_study(cfg, progress=False, log=messages.append, task=task)
    assert any("do not fit the device's memory" in m for m in messages), messages
    # Equal to float rounding: a chunk of ONE seed is a one-step loop, which XLA may fuse
    # differently from a loop over several (chunks of 2+ seeds match bitwise: above).
    for row in whole.rows:
        for split in ("train", "test"):
            np.testing.assert_allclose(
                squeezed.predictions[row][split],
                whole.predictions[row][split],
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{row} {split}",
            )
