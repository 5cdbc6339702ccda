"""One study split across two processes (jax.distributed on this machine's CPU).

Two ``jaxunlearn run`` processes with two CPU devices each join through a local
coordinator; their four devices split the seeds. Their results must match a single
process with four devices, only process 0 may write outputs, and checkpoints written by
the two processes must restore both in one process and in two. Blindspot runs as a sweep of
two values, so its rows are gathered, widened to 8 seed slots and split back across the
processes' devices. A host-driven study (one device per process) must equal one process
bitwise.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxunlearn.cli import main
from tests.helpers import TINY_RUN_ARGS, cached_child_env

pytestmark = pytest.mark.xdist_group("multiprocess")  # see tests/test_multidevice.py

ROOT = Path(__file__).resolve().parent.parent
STUDY = [
    "-m",
    "jaxunlearn.cli",
    "run",
    "--dataset",
    "synthetic",
    "--model-arg",
    "hidden=16,16",
    "--seeds",
    "4",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--unlearners",
    "blindspot",
    "--sweep",
    "blindspot.beta=0,10",
    "--no-progress",
    "--keep-unlearned",
]
# the host plan (each seed's one-device program dispatched to its device), one device per process
HOST_STUDY = [
    "-m",
    "jaxunlearn.cli",
    *TINY_RUN_ARGS,
    "--batch-size",
    "32",
    "--unlearners",
    "finetune",
    "--seed-strategy",
    "host",
    "--no-progress",
    "--no-checkpoints",
]
TIMING = ("run_seconds", "time_vs_retrain")


def _env(devices: int) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return cached_child_env(XLA_FLAGS=flags)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _two_processes(out: Path, *extra: str, study: list[str] = STUDY, devices: int = 2) -> list[str]:
    """Runs the study in two processes of ``devices`` devices each; returns their logs."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                *study,
                *extra,
                "--out",
                str(out / f"process{i}"),
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=ROOT,
            env=_env(devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    return logs


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _assert_metrics_close(got: dict, want: dict, rtol: float) -> None:
    for stage, metrics in want.items():
        for name, values in metrics.items():
            if name not in TIMING:
                np.testing.assert_allclose(
                    np.asarray(got[stage][name], float),
                    np.asarray(values, float),
                    rtol=rtol,
                    atol=rtol / 10,
                    err_msg=f"{stage} {name}",
                )


@pytest.mark.heavy(45)
def test_a_study_split_across_two_processes_matches_one_process(tmp_path):
    checkpoints = ["--checkpoint-dir", str(tmp_path / "ckpt")]
    logs = _two_processes(tmp_path / "split", *checkpoints)
    assert not (tmp_path / "split" / "process1").exists() and "original:" not in logs[1]  # process 1 is quiet
    split = _results(tmp_path / "split" / "process0")
    assert split["environment"]["jax_process_count"] == 2
    assert split["config"]["plan"]["devices"] == 4

    # one process of four devices, from the two processes' original and retrained models
    single = subprocess.run(
        [sys.executable, *STUDY, *checkpoints, "--out", str(tmp_path / "single")],
        cwd=ROOT,
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    assert "original: loaded from" in single.stdout and "finetune: loaded" not in single.stdout
    _assert_metrics_close(split["per_seed"], _results(tmp_path / "single")["per_seed"], rtol=1e-5)

    # two processes again, every stage restored from the checkpoints: the same numbers exactly
    logs = _two_processes(tmp_path / "resumed", *checkpoints, "--resume")
    assert "blindspot[beta=0]: loaded from" in logs[0] and "blindspot[beta=10]: loaded from" in logs[0]
    _assert_metrics_close(_results(tmp_path / "resumed" / "process0")["per_seed"], split["per_seed"], rtol=0)


@pytest.mark.heavy(20)
def test_a_host_driven_study_across_two_processes_is_bitwise_one_process(tmp_path):
    _two_processes(tmp_path / "split", study=HOST_STUDY, devices=1)
    split = _results(tmp_path / "split" / "process0")
    assert split["config"]["plan"]["devices"] == 2 and split["config"]["plan"]["seed_strategy"] == "host"
    # one process of one device: this one (the same XLA flags and cache as the two above)
    assert jax.device_count() == 1
    assert main([*HOST_STUDY[2:], "--out", str(tmp_path / "single")]) == 0
    _assert_metrics_close(split["per_seed"], _results(tmp_path / "single")["per_seed"], rtol=0)  # same programs
