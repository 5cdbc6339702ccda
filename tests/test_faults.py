"""Fault tests: a small CPU study killed with SIGKILL at random points always resumes to the
metrics of an uninterrupted run, and no partially written checkpoint is ever read.

Each killed or resumed run is a real ``jaxunlearn run`` process sharing the test XLA cache, so
the kill can land anywhere: while importing, compiling, training, writing a checkpoint or
measuring. The uninterrupted reference runs the same command in the test's own process.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxunlearn.checkpoints import KILL_BEFORE_COMMIT_ENV
from jaxunlearn.cli import main
from tests.helpers import TINY_RUN_ARGS, cached_child_env

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("faults")

ROOT = Path(__file__).resolve().parent.parent
ARGS = [*TINY_RUN_ARGS, "--batch-size", "64", "--finetune-epochs", "2", "--unlearners", "finetune", "--no-progress"]
# Studies killed at random points, twice each (the run resumed after the first kill is
# killed too), then resumed to the end. A kill is placed by the study's progress, not by
# the clock: after a random number of newly committed stages (0 to all that are left) and a
# random delay, so it lands during import, compiling, training, a checkpoint write or the
# metrics whatever the machine's speed. (A clock-based earlier version waited for 10 kills
# and, on a loaded machine where runs ended before their kill times, ran for half an hour.)
KILLED_STUDIES = 2
KILLS_PER_STUDY = 2
STAGES = 3  # original, retrain, finetune
TIMED = ("run_seconds", "time_vs_retrain")


def _start(out: Path, resume: bool, **env) -> subprocess.Popen:
    # Every program goes into the shared cache, however quick its compile: with JAX's default
    # threshold (1 s) most of these small programs were compiled again by each of the dozen runs.
    cmd = [sys.executable, "-m", "jaxunlearn.cli", *ARGS, "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(
        cmd, cwd=ROOT, env=cached_child_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


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
    """The metrics of an uninterrupted run (the same command, in this process: the same XLA
    flags and cache as the processes the tests start)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main([*ARGS, "--out", str(out)]) == 0
    return _metrics(out)


def _committed(out: Path) -> int:
    folder = out / "checkpoints"
    return len([p for p in folder.glob("*-*") if not p.name.startswith(".tmp-")]) if folder.exists() else 0


def _run_until(out: Path, resume: bool, after_stages: int, delay: float) -> bool:
    """Runs the study and SIGKILLs it ``delay`` seconds after ``after_stages`` more stages
    were committed. True when it was killed (False: it finished first)."""
    proc = _start(out, resume=resume)
    start_count, deadline = _committed(out), None
    while proc.poll() is None:
        if deadline is None and _committed(out) >= start_count + after_stages:
            deadline = time.monotonic() + delay
        if deadline is not None and time.monotonic() >= deadline:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            _assert_checkpoints_whole(out)
            return True
        time.sleep(0.02)
    log, _ = proc.communicate()
    assert proc.returncode == 0, log  # finished before its kill
    return False


@pytest.mark.heavy(33)  # with the reference run
def test_random_sigkills_always_resume_to_identical_metrics(reference, tmp_path):
    """Studies killed at random points, then resumed to the end: every one ends with the
    uninterrupted run's metrics, and no partially written stage is ever read."""
    expected = reference
    rng = random.Random(1234)
    kills, where = 0, []  # where: (stages committed before the kill, delay)
    for study in range(KILLED_STUDIES):
        out = tmp_path / f"study{study}"
        resume = False
        for _ in range(KILLS_PER_STUDY):
            after = rng.randint(0, STAGES - _committed(out))
            delay = rng.uniform(0.0, 4.0 if after == 0 else 0.5)  # at the start: import and compiling
            if not _run_until(out, resume, after, delay):
                break
            kills += 1
            where.append((_committed(out), round(delay, 2)))
            resume = True
        else:
            proc = _start(out, resume=True)
            log, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, log
        assert _metrics(out) == expected, f"study {study} finished with different metrics"
    planned = KILLED_STUDIES * KILLS_PER_STUDY
    assert kills >= planned - 1, f"only {kills} of {planned} planned kills landed"
    print(
        f"{kills} SIGKILLs (committed stages, delay in s, at each kill: {where}), {KILLED_STUDIES} studies "
        f"finished with metrics identical to the uninterrupted run"
    )


@pytest.mark.heavy(12)
def test_kill_between_write_and_commit_leaves_nothing_readable(reference, tmp_path):
    expected = reference
    proc = _start(tmp_path, resume=False, **{KILL_BEFORE_COMMIT_ENV: "retrain"})
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, log
    folder = tmp_path / "checkpoints"
    assert list(folder.glob(".tmp-retrain-*")), "the killed write left its temporary folder"
    assert not list(folder.glob("retrain-*")), "an uncommitted stage must not look committed"
    assert list(folder.glob("original-*"))
    proc = _start(tmp_path, resume=True)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    assert "original: loaded from" in log and "retrain: loaded from" not in log
    assert not list(folder.glob(".tmp-*")), "the abandoned temporary folder is cleaned up"
    assert _metrics(tmp_path) == expected
