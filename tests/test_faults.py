"""Fault tests: a small CPU study killed with SIGKILL at random points always resumes to the
metrics of an uninterrupted run, and no partially written checkpoint is ever read.

Each run is a real ``jaxunlearn run`` process sharing the test XLA cache, so the kill can
land anywhere: while importing, compiling, training, writing a checkpoint or measuring.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxunlearn.checkpoints import KILL_BEFORE_COMMIT_ENV

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("faults")

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["run", "--dataset", "synthetic", "--model-arg", "hidden=16,16", "--seeds", "2", "--epochs", "2",
        "--batch-size", "64", "--finetune-epochs", "2", "--unlearners", "finetune", "--no-progress"]
# Studies killed at random points: each once, the last one twice (its resumed run is
# killed too), then resumed to the end. Bounded: at most 2 runs per kill, whatever the
# machine's speed (an earlier loop that waited for 10 kills could run for half an hour on
# a loaded machine, where most runs ended before their kill time).
KILLED_STUDIES = 4
TIMED = ("run_seconds", "time_vs_retrain")


def _env(**extra) -> dict:
    cache = os.environ.get("JAXUNLEARN_TEST_CACHE", str(ROOT / ".pytest_cache" / "xla"))
    return dict(os.environ, JAXUNLEARN_CACHE_DIR=cache, PYTHONPATH=str(ROOT), **extra)


def _start(out: Path, resume: bool, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jaxunlearn.cli", *ARGS, "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metrics(out: Path) -> dict:
    per_seed = json.loads((out / "results.json").read_text())["per_seed"]
    return {row: {k: v for k, v in m.items() if k not in TIMED} for row, m in per_seed.items()}


def _assert_checkpoints_whole(out: Path) -> None:
    """Every committed stage folder is complete; only hidden temporary folders may be partial."""
    folder = out / "checkpoints"
    if not folder.exists():
        return
    for stage in folder.iterdir():
        if stage.is_dir() and not stage.name.startswith(".tmp-"):
            meta = json.loads((stage / "meta.json").read_text())
            assert stage.name == f"{meta['stage']}-{meta['key']}"
            assert (stage / "state" / "commit_success.txt").exists() or any((stage / "state").iterdir())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(metrics of an uninterrupted run, seconds a run takes with the compile cache warm)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(out, resume=False)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    warm = tmp_path_factory.mktemp("warm")
    start = time.monotonic()
    proc = _start(warm, resume=False)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    assert _metrics(warm) == _metrics(out)
    return _metrics(out), time.monotonic() - start


def _run_until(out: Path, resume: bool, kill_after: float) -> bool:
    """Runs the study; SIGKILLs it after ``kill_after`` seconds. True when it was killed."""
    proc = _start(out, resume=resume)
    try:
        log, _ = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        _assert_checkpoints_whole(out)
        return True
    assert proc.returncode == 0, log  # finished before its kill time
    return False


def test_random_sigkills_always_resume_to_identical_metrics(reference, tmp_path):
    """Studies killed at random points (import, compile, training, checkpoint writes,
    metrics), then resumed to the end: every one ends with the uninterrupted metrics."""
    expected, duration = reference
    rng = random.Random(1234)
    kills, stages_done = 0, []  # stages_done: committed stages found after each kill
    for study in range(KILLED_STUDIES):
        out = tmp_path / f"study{study}"
        resume = False
        for _ in range(2 if study == KILLED_STUDIES - 1 else 1):
            if not _run_until(out, resume, rng.uniform(0.1, 0.9) * duration):
                break
            kills += 1
            stages_done.append(len(list((out / "checkpoints").glob("*-*"))) if (out / "checkpoints").exists() else 0)
            resume = True
        else:
            proc = _start(out, resume=True)
            log, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, log
        assert _metrics(out) == expected, f"study {study} finished with different metrics"
    # Kill times lie within a warm run's duration, so runs end before their kill only on a
    # machine that sped up a lot; most must have been killed.
    assert kills >= KILLED_STUDIES - 1, f"only {kills} of {KILLED_STUDIES + 1} planned kills landed"
    print(f"{kills} SIGKILLs (committed stages at each kill: {stages_done}), {KILLED_STUDIES} studies finished with "
          f"metrics identical to the uninterrupted run")


def test_kill_between_write_and_commit_leaves_nothing_readable(reference, tmp_path):
    expected, _ = reference
    proc = _start(tmp_path, resume=False, **{KILL_BEFORE_COMMIT_ENV: "retrain"})
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, log
    folder = tmp_path / "checkpoints"
    assert list(folder.glob(".tmp-retrain-*")), "the killed write left its temporary folder"
    assert not [p for p in folder.glob("retrain-*")], "an uncommitted stage must not look committed"
    assert list(folder.glob("original-*"))
    proc = _start(tmp_path, resume=True)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    assert "original: loaded from" in log and "retrain: loaded from" not in log
    assert not list(folder.glob(".tmp-*")), "the abandoned temporary folder is cleaned up"
    assert _metrics(tmp_path) == expected
