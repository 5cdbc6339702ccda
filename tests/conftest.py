"""Test-wide settings.

- Rank promotion raises, so a [B] vs [B, 1] mix-up fails loudly.
- A persistent XLA compilation cache (under .pytest_cache/) lets identical programs built
  by different tests, and by reruns, skip recompiling: XLA compiles dominate test time
  on two CPU cores. Every program is cached, however quick its compile.
- XLA:CPU compiles with LLVM's optimisation level 0 (``XLA_FLAGS``, inherited by the
  processes tests start): the tests' programs are tiny, so compiling them is most of the
  suite's time, and O0 cut it by ~40% (a small CLI study: 22 s of XLA compile -> 13 s, wall
  30 s -> 20 s). Results are compared within the tests' own runs; the one test that
  compares with committed results (test_reproduce.py) runs its study with the default.
"""
import os
from pathlib import Path

TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # a level given explicitly wins
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import jax  # noqa: E402 (after XLA_FLAGS: the backend reads them when it starts)

jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = os.environ.get("JAXUNLEARN_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "xla"))
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)



def pytest_addoption(parser):
    parser.addoption("--unlearner-plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                     help="also run the unlearner conformance suite on this plugin's unlearners (repeatable)")


# tests/multidevice/ needs a process with four devices: tests/test_multidevice.py starts one.
collect_ignore = [] if os.environ.get("JAXUNLEARN_MULTIDEVICE") else ["multidevice"]
