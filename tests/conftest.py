"""Test-wide settings.

- Rank promotion raises, so a [B] vs [B, 1] mix-up fails loudly.
- A persistent XLA compilation cache (under .pytest_cache/) lets identical programs built
  by different tests, and by reruns, skip recompiling: XLA compiles dominate test time
  on two CPU cores.
"""
import os
from pathlib import Path

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = os.environ.get("JAXUNLEARN_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "xla"))
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)



def pytest_addoption(parser):
    parser.addoption("--unlearner-plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                     help="also run the unlearner conformance suite on this plugin's unlearners (repeatable)")


# tests/multidevice/ needs a process with four devices: tests/test_multidevice.py starts one.
collect_ignore = [] if os.environ.get("JAXUNLEARN_MULTIDEVICE") else ["multidevice"]
