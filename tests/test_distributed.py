"""One study split across two processes (jax.distributed on this machine's CPU).

Two ``jaxunlearn run`` processes with two CPU devices each join through a local
coordinator; their four devices split the seeds. The result must match a single process
with four devices, and only process 0 may write outputs.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STUDY = ["-m", "jaxunlearn.cli", "run", "--dataset", "synthetic", "--model-arg", "hidden=16,16", "--seeds", "4",
         "--epochs", "2", "--batch-size", "32", "--finetune-epochs", "1", "--no-progress", "--no-checkpoints"]


def _env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAXUNLEARN_CACHE_DIR": "off"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _per_seed(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["per_seed"]


def test_a_study_split_across_two_processes_matches_one_process(tmp_path):
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, *STUDY, "--out", str(tmp_path / f"process{i}"),
                               "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (0, 1)]
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    single = subprocess.run([sys.executable, *STUDY, "--out", str(tmp_path / "single")], cwd=ROOT, env=_env(4),
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]

    assert not (tmp_path / "process1").exists() and "original:" not in logs[1]  # process 1 stays quiet
    results = json.loads((tmp_path / "process0" / "results.json").read_text())
    assert results["environment"]["jax_process_count"] == 2
    assert results["config"]["plan"]["devices"] == 4
    split, alone = _per_seed(tmp_path / "process0"), _per_seed(tmp_path / "single")
    for stage, metrics in alone.items():
        for name, values in metrics.items():
            if name not in ("run_seconds", "time_vs_retrain"):
                np.testing.assert_allclose(np.asarray(split[stage][name], float), np.asarray(values, float),
                                           rtol=1e-5, atol=1e-6, err_msg=f"{stage} {name}")
