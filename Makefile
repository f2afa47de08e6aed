# The two commands of the README: `make serve` and `make test`. Each target
# bootstraps .venv from the pinned requirements on first use (and installs
# the `rsvp` command into it). requirements-dev.txt is the lock that gets
# installed; requirements-dev.in names the direct dependencies behind it.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.in requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)
PORT ?= 8000
# make test runs pytest on this many processes (pytest-xdist): the suite is CPU-bound, CI has 2 cores.
TEST_WORKERS ?= 2

.PHONY: venv serve test bench protos clean

venv: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.in requirements-dev.txt pyproject.toml
	@python3 -m venv --help >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q python3-venv)
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

serve: venv
	PORT=$(PORT) $(PYTHON) -m devserver.serve

test: venv
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: venv
	$(PYTHON) -m bench

protos: venv
	$(PYTHON) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache
