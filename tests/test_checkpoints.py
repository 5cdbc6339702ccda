"""Stage checkpoints: exact round trip, reuse by configuration, refusal of foreign or corrupt files."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxunlearn.checkpoints import (
    CheckpointStore,
    chunk_name,
    data_fingerprint,
    discard_checkpoint,
    training_settings,
)
from jaxunlearn.study import run_study
from tests.helpers import TINY, tiny_task

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("checkpoints")

CFG = dataclasses.replace(TINY, seeds=2, unlearners=("finetune",))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    logs: list[str] = []
    result = run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root)
    return root, result, logs


def _metrics(result):
    return {
        row: {k: v for k, v in m.items() if k not in ("run_seconds", "time_vs_retrain")}
        for row, m in result.per_seed.items()
    }


def _assert_same_metrics(a, b):
    ma, mb = _metrics(a), _metrics(b)
    assert ma.keys() == mb.keys()
    for row in ma:
        for name in ma[row]:
            np.testing.assert_array_equal(ma[row][name], mb[row][name], err_msg=f"{row}.{name}")


def test_every_stage_saved_with_meta(first_run):
    root, result, _ = first_run
    assert set(result.checkpoints) == {"original", "retrain", "finetune"}
    for stage, folder in result.checkpoints.items():
        meta = json.loads((root / folder.split("/")[-1] / "meta.json").read_text())
        assert meta["stage"] == stage and meta["data_fingerprint"] == data_fingerprint(tiny_task())
    assert not list(root.glob(".tmp-*"))


def test_rerun_reuses_original_and_retrain_with_identical_metrics(first_run):
    root, result, _ = first_run
    logs: list[str] = []
    again = run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root)
    assert any(line.startswith("original: loaded from") for line in logs)
    assert any(line.startswith("retrain: loaded from") for line in logs)
    assert not any(line.startswith("finetune: loaded") for line in logs), "unlearners rerun unless resuming"
    assert again.timings["original"]["loaded"] and not again.timings["finetune"]["loaded"]
    _assert_same_metrics(result, again)


def test_resume_reuses_every_stage(first_run):
    root, result, _ = first_run
    logs: list[str] = []
    again = run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root, resume=True)
    assert sum("loaded from" in line for line in logs) == 3
    _assert_same_metrics(result, again)


def test_restored_state_is_bitwise_equal(first_run, tmp_path):
    root, _result, _ = first_run
    store = CheckpointStore(root, CFG, data_fingerprint(tiny_task()))
    from jaxunlearn.study import build_model, seed_keys
    from jaxunlearn.train.state import finished

    model = build_model(CFG, tiny_task())
    full = jax.eval_shape(jax.vmap(lambda k: model.fresh_state(k, 0.0)), seed_keys(0, CFG.seeds, "original"))
    abstract = finished(full)  # a stage is saved without its optimizer state
    loaded = store.load("retrain", abstract)
    assert loaded.state.opt_state is None
    with pytest.raises(ValueError, match="does not match this study's model"):
        store.load("retrain", full)  # asking for Adam's moments: they were never saved
    fresh = run_study(CFG, progress=False, log=lambda m: None, task=tiny_task(), checkpoint_dir=tmp_path)
    del fresh
    store_b = CheckpointStore(tmp_path, CFG, data_fingerprint(tiny_task()))
    recomputed = store_b.load("retrain", abstract)
    for a, b in zip(jax.tree_util.tree_leaves(loaded.state), jax.tree_util.tree_leaves(recomputed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.diverged_at.shape == (CFG.seeds, 1)


def test_changed_training_setting_changes_the_key_but_metric_settings_do_not():
    fp = "f" * 64
    base = CheckpointStore("/nonexistent", CFG, fp)
    assert CheckpointStore("/nonexistent", dataclasses.replace(CFG, train_epochs=4), fp).key("original") != base.key(
        "original"
    )
    assert CheckpointStore("/nonexistent", dataclasses.replace(CFG, mia_samples=7), fp).key("original") == base.key(
        "original"
    )
    assert CheckpointStore("/nonexistent", CFG, "e" * 64).key("original") != base.key("original")
    assert "unlearners" not in training_settings(CFG)


def test_resume_refuses_another_configuration(first_run):
    root, _, _ = first_run
    other = dataclasses.replace(CFG, train_epochs=CFG.train_epochs + 1)
    with pytest.raises(ValueError, match=r"another configuration; it differs in train_epochs: 3 there, 4 now"):
        run_study(other, progress=False, log=lambda m: None, task=tiny_task(), checkpoint_dir=root, resume=True)


def test_resume_refuses_other_data(first_run):
    root, _, _ = first_run
    with pytest.raises(ValueError, match="made from different data"):
        run_study(CFG, progress=False, log=lambda m: None, task=tiny_task(n=300), checkpoint_dir=root, resume=True)


def test_foreign_and_corrupt_checkpoints_are_refused(first_run, tmp_path):
    import shutil

    root, _, _ = first_run
    work = tmp_path / "copy"
    shutil.copytree(root, work)
    store = CheckpointStore(work, CFG, data_fingerprint(tiny_task()))
    meta_path = store.path("original") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(meta, key="0" * 20)))
    with pytest.raises(ValueError, match="belongs to another configuration"):
        store.load("original", None)
    meta_path.write_text("{ truncated")
    with pytest.raises(ValueError, match="unreadable or corrupt"):
        store.load("original", None)


def test_abandoned_temporary_folders_are_removed(tmp_path):
    stale = tmp_path / ".tmp-original-abc-999999999-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("partial")
    CheckpointStore(tmp_path, CFG, "f" * 64).begin(resume=False)
    assert not stale.exists()


def test_a_discarded_checkpoint_is_whole_or_gone_at_any_moment(tmp_path, monkeypatch):
    def stage_folder():
        folder = tmp_path / "finetune-0123"
        (folder / "state").mkdir(parents=True)
        (folder / "meta.json").write_text("{}")
        (folder / "state" / "array").write_text("data")
        return folder

    folder = stage_folder()
    discard_checkpoint(folder)
    assert not folder.exists() and not list(tmp_path.iterdir())
    discard_checkpoint(folder)  # already gone: nothing to do

    # Killed while deleting: the stage folder itself is already gone (renamed away first),
    # and what is left is a hidden temporary folder that the next run clears.
    folder = stage_folder()

    def killed(path, ignore_errors=False):
        (path / "meta.json").unlink()  # deletion under way...
        raise KeyboardInterrupt  # ...then the process dies

    monkeypatch.setattr("jaxunlearn.checkpoints.shutil.rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        discard_checkpoint(folder)
    monkeypatch.undo()
    assert not folder.exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-finetune-0123-")
    CheckpointStore(tmp_path, CFG, "f" * 64).begin(resume=False)
    assert not leftovers[0].exists()


def test_a_checkpoint_of_other_training_code_is_reused_with_a_warning(first_run, monkeypatch):
    import jaxunlearn.checkpoints as checkpoints

    root, result, _ = first_run
    folder = root / result.checkpoints["original"].split("/")[-1]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["library"]["training_code"] == checkpoints.training_code_fingerprint()
    logs: list[str] = []
    run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root)
    assert not [line for line in logs if line.startswith("WARNING")], "same code: no warning"
    monkeypatch.setattr(checkpoints, "training_code_fingerprint", lambda: "0123456789abcdef")
    logs.clear()
    again = run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root)
    warnings = [line for line in logs if line.startswith("WARNING")]
    assert len(warnings) == 2 and all(str(root) in line for line in warnings)  # original and retrain
    assert "training code 0123456789abcdef" in warnings[0] and meta["library"]["training_code"] in warnings[0]
    _assert_same_metrics(result, again)  # reused, not retrained


def test_a_stage_run_in_calls_saves_each_call_and_a_kill_loses_one(tmp_path, monkeypatch):
    """chunk=1: each seed is its own call. Killed while committing finetune's second call,
    the resumed study loads the first call's seed, runs the second, scores exactly what an
    uninterrupted chunked study scores, and leaves only whole stages behind."""
    part = chunk_name("finetune", 1, 2)
    real_commit = CheckpointStore._commit

    def commit_or_die(self, stage, *args):
        if stage == part:
            raise KeyboardInterrupt(f"killed while committing {part}")
        return real_commit(self, stage, *args)

    killed = tmp_path / "killed"
    monkeypatch.setattr(CheckpointStore, "_commit", commit_or_die)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=killed, chunk=1)
    monkeypatch.setattr(CheckpointStore, "_commit", real_commit)
    assert "finetune: seeds 0-0 of 2 done and saved" in logs
    assert len(list(killed.glob("finetune_seeds0-1-*"))) == 1 and not list(killed.glob("original_seeds*"))

    logs = []
    resumed = run_study(
        CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=killed, resume=True, chunk=1
    )
    assert any(line.startswith("finetune: seeds 0-0 loaded from") for line in logs), logs
    assert "finetune: seeds 1-1 of 2 done and saved" in logs
    assert not list(killed.glob("*_seeds*")), "the parts are deleted once the stage is saved whole"
    whole = run_study(
        CFG, progress=False, log=lambda m: None, task=tiny_task(), checkpoint_dir=tmp_path / "whole", chunk=1
    )
    _assert_same_metrics(resumed, whole)


def test_bad_chunk_is_refused():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="chunk"):
            run_study(CFG, progress=False, log=lambda m: None, task=tiny_task(), chunk=bad)


def test_reference_rows_are_measured_once_per_models_and_metric_settings(first_run):
    root, result, _ = first_run
    (cached,) = root.glob("reference-metrics-*.json")  # the first study measured and kept them
    original_text = cached.read_text()
    saved = json.loads(original_text)
    assert set(saved) == {"original", "retrain"}
    np.testing.assert_array_equal(saved["original"]["mia"], result.per_seed["original"]["mia"])
    saved["original"]["mia"][0] = 0.123  # the next study reads this file: an edited value shows up
    cached.write_text(json.dumps(saved))
    try:
        logs: list[str] = []
        again = run_study(CFG, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root)
        assert any("original and retrain measured before" in line for line in logs)
        assert again.per_seed["original"]["mia"][0] == 0.123
        # the first study attacked all three rows' models; this one only finetune's
        assert result.metric_timing["attacked_models"] == 3 * CFG.seeds
        assert again.metric_timing["attacked_models"] == CFG.seeds
        np.testing.assert_array_equal(again.per_seed["finetune"]["ain"], result.per_seed["finetune"]["ain"])
        other = dataclasses.replace(CFG, mia_samples=CFG.mia_samples // 2)  # another key: measured afresh
        run_study(other, progress=False, log=logs.append, task=tiny_task(), checkpoint_dir=root)
        assert len(list(root.glob("reference-metrics-*.json"))) == 2
    finally:
        cached.write_text(original_text)


def test_rows_attacked_while_later_rows_train_give_the_same_metrics(first_run, monkeypatch):
    from jaxunlearn import study

    root, result, _ = first_run
    monkeypatch.setattr(study, "ATTACK_DURING_TRAINING", True)  # what a GPU does; the CPU's default is after
    fresh = run_study(CFG, progress=False, log=lambda _: None, task=tiny_task())
    assert fresh.metric_timing["attacked_during_training"] == 3 * CFG.seeds
    _assert_same_metrics(fresh, result)
    for row, preds in result.predictions.items():
        for split, values in preds.items():
            np.testing.assert_array_equal(fresh.predictions[row][split], values, err_msg=f"{row}.{split}")
    # with the checkpoints: the reference rows' metrics come from the cache, so only finetune is attacked
    reused = run_study(CFG, progress=False, log=lambda _: None, task=tiny_task(), checkpoint_dir=root)
    assert reused.metric_timing["attacked_during_training"] == reused.metric_timing["attacked_models"] == CFG.seeds
    _assert_same_metrics(reused, result)
