"""Runs tests/multidevice/ in a child process with four CPU devices.

XLA's device count is fixed when the backend starts, so plans that split seeds across
devices are tested in their own process, started with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The tests that start processes of several devices run one after another on one test
# worker (``make test``: pytest-xdist --dist loadgroup), not beside each other.
pytestmark = pytest.mark.xdist_group("multiprocess")


@pytest.mark.heavy(46)
def test_seeds_split_across_four_devices():
    env = {
        **os.environ,
        "JAXUNLEARN_MULTIDEVICE": "1",
        "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip(),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/multidevice"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]
