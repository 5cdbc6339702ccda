# Two entry points for a fresh machine (see README):
#   make run   - create .venv, install jaxunlearn, run the default multi-seed study
#   make test  - create .venv, install jaxunlearn with test extras, run the test suite
#   make lint  - the static checks: ruff check, ruff format --check, mypy (pyproject.toml)
#   make reproduce - rerun every committed study and compare its per-seed metrics bitwise
#                    (ARGS="--only default,text", "--write" to regenerate: docs/reproduce.py)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= results
# Test processes (pytest-xdist): 2 uses both cores of the 2-core CI machine (a clean clone on
# such a machine: 301-506 s in all, by machine and hour, docs/DEVELOPMENT.md); 0 runs
# everything in one process.
TEST_WORKERS ?= 2

.PHONY: run test lint install reproduce clean

# A fresh venv with jaxunlearn and the extras $(1), at the pinned versions: uv (a registry
# package, installed into the venv first) resolves and installs the ~150 packages in about
# 15 s on the 2-core CI machine, where pip took about 95 s; pip does it if uv cannot be had.
RUN_EXTRAS := .[data,plots]
TEST_EXTRAS := .[test,data,plots,tensorboard]
define install_venv
	$(PYTHON) -m venv $(VENV)
	( $(PY) -m pip install -q uv && \
	  $(VENV)/bin/uv pip install -q --python $(PY) -c constraints.txt -e "$(1)" ) || \
	( $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -c constraints.txt -e "$(1)" )
endef

# One stamp per set of extras, each rebuilt when pyproject.toml or constraints.txt (the pinned
# versions the committed results were produced with) changes: `make run` needs the
# demo data (the default study reads pmdarima's taylor series) and matplotlib; `make test`
# also the test tools, so every loader and the figures are tested.
$(VENV)/.installed-run: pyproject.toml constraints.txt
	$(call install_venv,$(RUN_EXTRAS))
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt
	$(call install_venv,$(TEST_EXTRAS))
	touch $@

install: $(VENV)/.installed-test

run: $(VENV)/.installed-run
	$(VENV)/bin/jaxunlearn run --out $(OUT)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# Static checks, configured in pyproject.toml ([tool.ruff], [tool.mypy]); CI runs them before
# the tests (.ci/run). ruff formats with `$(VENV)/bin/ruff format .`.
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

reproduce: $(VENV)/.installed-test
	$(PY) docs/reproduce.py $(ARGS)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .mypy_cache
