# ordergate: every target creates the virtualenv itself; only python3 is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CRASHES ?= 20
# pytest-xdist workers for make test / test-fast (the machine has 2 cores; the suite waits on subprocesses a lot)
WORKERS ?= 2

.PHONY: install run test test-fast lint bench chaos install-service clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ordergate run

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n $(WORKERS)

# the contributor's loop: everything but the tests marked slow (daemon subprocesses, chaos, breaks)
test-fast: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n $(WORKERS) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --crashes $(CRASHES)

# one service (ordergate.service), or with INSTANCE=NAME the template ordergate@.service and ordergate@NAME
install-service: $(STAMP)
	sudo env INSTANCE=$(INSTANCE) bash systemd/install.sh

clean:
	rm -rf $(VENV) .ordergate build *.egg-info
