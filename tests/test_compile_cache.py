"""The persistent compile cache that run_study, run_evaluation and the CLI turn on."""

from __future__ import annotations

import jax
import pytest

from jaxunlearn import compile_cache


@pytest.fixture
def no_cache_set(monkeypatch, tmp_path):
    """A process that has set no cache folder, with HOME in tmp_path; restores the tests' cache."""
    before = getattr(jax.config, "jax_compilation_cache_dir")  # noqa: B009 (jax types no such attribute)
    monkeypatch.delenv(compile_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    jax.config.update("jax_compilation_cache_dir", None)
    yield tmp_path
    jax.config.update("jax_compilation_cache_dir", before)


def _current():
    return getattr(jax.config, "jax_compilation_cache_dir")  # noqa: B009


def test_default_folder_when_nothing_is_set(no_cache_set):
    folder = compile_cache.enable()
    assert folder == str(no_cache_set / ".cache" / "jaxunlearn" / "xla") == _current()


def test_the_environment_variable_wins_and_off_sets_nothing(no_cache_set, monkeypatch):
    monkeypatch.setenv(compile_cache.CACHE_ENV, "off")
    assert compile_cache.enable() is None and _current() is None
    monkeypatch.setenv(compile_cache.CACHE_ENV, str(no_cache_set / "mine"))
    assert compile_cache.enable() == str(no_cache_set / "mine") == _current()


def test_a_folder_the_process_chose_is_kept(no_cache_set, monkeypatch):
    jax.config.update("jax_compilation_cache_dir", str(no_cache_set / "chosen"))
    assert compile_cache.enable() == str(no_cache_set / "chosen") == _current()
    monkeypatch.setenv(compile_cache.CACHE_ENV, "off")  # off never unsets what the process chose
    assert compile_cache.enable() == str(no_cache_set / "chosen")


@pytest.fixture
def jax_default_threshold():
    """JAX's default threshold (programs that compiled in 1 s or more are written); restores
    the tests' own (0: every program)."""
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before)


def test_every_program_is_kept_not_only_slow_ones(no_cache_set, jax_default_threshold):
    compile_cache.enable()
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0


def test_a_threshold_the_process_chose_is_kept(no_cache_set, jax_default_threshold):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.5)
    compile_cache.enable()
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5
