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

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["run", "--dataset", "synthetic", "--model-arg", "hidden=16,16", "--seeds", "2", "--epochs", "2",
        "--batch-size", "64", "--finetune-epochs", "2", "--unlearners", "finetune", "--no-progress"]
MIN_KILLS = 10
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
    out = tmp_path_factory.mktemp("uninterrupted")
    start = time.monotonic()
    proc = _start(out, resume=False)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    return _metrics(out), time.monotonic() - start


def test_random_sigkills_always_resume_to_identical_metrics(reference, tmp_path):
    """Studies killed 1-3 times each at random points, then resumed to the end."""
    expected, duration = reference
    rng = random.Random(1234)
    kills, finished, stages_done = 0, 0, []  # stages_done: committed stages found after each kill
    while kills < MIN_KILLS:
        out = tmp_path / f"study{finished}"
        resume = False
        for _ in range(rng.randint(1, 3)):
            proc = _start(out, resume=resume)
            try:
                log, _ = proc.communicate(timeout=rng.uniform(0.2, 1.0) * duration)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                kills += 1
                _assert_checkpoints_whole(out)
                stages_done.append(len(list((out / "checkpoints").glob("*-*"))) if (out / "checkpoints").exists()
                                   else 0)
                resume = True
                continue
            assert proc.returncode == 0, log  # finished before its kill time
            break
        else:  # killed every time: resume it to the end
            proc = _start(out, resume=True)
            log, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, log
        assert _metrics(out) == expected, f"study {finished} finished with different metrics"
        finished += 1
    print(f"{kills} SIGKILLs (committed stages at each kill: {stages_done}), "
          f"{finished} studies finished with metrics identical to the uninterrupted run")


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
