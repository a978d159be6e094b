# Two entry points: `make run` and `make test`. Both create .venv on first use and are idempotent:
# the install step re-runs only when a requirements file or pyproject.toml changes.
PYTHON ?= python3
# Where `make run` listens: `make run PORT=8080` (HOST=0.0.0.0 needs API keys, see the README).
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The local CPU build on these machines (DEVELOPERS.md); the Dockerfile's TORCH_VERSION names the same.
TORCH := torch==2.13.0
CLIENTS := .venv-clients
CLIENTS_STAMP := $(CLIENTS)/.installed
JS_CLIENTS := tests/compat/js
JS_STAMP := $(JS_CLIENTS)/node_modules/.installed
# ONNX Runtime Web for the browser client: served by faceforge at /client/ort/ (not a test tool).
BROWSER_CLIENT := client
BROWSER_STAMP := $(BROWSER_CLIENT)/node_modules/.installed

.PHONY: run eval test lint typecheck pytest install browser bench clean locks

$(STAMP): pyproject.toml requirements-dev.lock requirements-nodeps.txt requirements-nodeps-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: 2.13.0 resolves to the local CPU build; anything later that wants torch is satisfied.
	$(BIN)/pip install --quiet $(TORCH)
	# Both installs and the tools: requirements-dev.lock pins .[worker,dev] (worker holds serve).
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt -r requirements-nodeps-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolve the locks from pyproject.toml (DEVELOPERS.md, "Locks"): the worker's first, then the API's
# and the developers' within it, so every install runs the versions the tests ran. torch stays out
# (installed first, a local build); --upgrade moves every pin to the newest allowed.
LOCK := CUSTOM_COMPILE_COMMAND="make locks" $(BIN)/pip-compile --quiet --strip-extras --generate-hashes \
	--no-emit-index-url --no-emit-find-links --unsafe-package torch
locks: $(STAMP)
	# torch's own setuptools below 81: the dev lock, resolved within these pins, needs it (DEVELOPERS.md).
	printf '%s\n' "$(TORCH)" "setuptools<81" > $(VENV)/lock-constraints.txt
	$(LOCK) $(UPGRADE) --extra worker -c $(VENV)/lock-constraints.txt -o requirements-worker.lock pyproject.toml
	$(LOCK) --extra serve -c requirements-worker.lock -o requirements-serve.lock pyproject.toml
	$(LOCK) --extra worker --extra dev -c $(VENV)/lock-constraints.txt -c requirements-worker.lock \
		-o requirements-dev.lock pyproject.toml

install: $(STAMP) browser $(CLIENTS_STAMP) $(JS_STAMP) $(BROWSER_STAMP)

# onnxruntime-web from npm (the lock file pins what resolved here), for GET /client/ort/*.
$(BROWSER_STAMP): $(BROWSER_CLIENT)/package.json $(BROWSER_CLIENT)/package-lock.json
	cd $(BROWSER_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $(BROWSER_STAMP)

# CompreFace's JavaScript SDK from npm, for the same tests (the lock file pins what resolved here).
$(JS_STAMP): $(JS_CLIENTS)/package.json $(JS_CLIENTS)/package-lock.json
	cd $(JS_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

# Published API clients for the compatibility tests, unmodified, with their own (old) pins.
$(CLIENTS_STAMP): requirements-clients.txt
	test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/pip install --quiet --upgrade pip
	$(CLIENTS)/bin/pip install --quiet --no-deps -r requirements-clients.txt
	touch $(CLIENTS_STAMP)

# The browser tests drive Debian's chromium with Playwright (never `playwright install`, which downloads).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/faceforge -v serve --host $(HOST) --port $(PORT)

eval: $(STAMP)
	$(BIN)/faceforge eval --dataset ../shared/faces/krasserm_lfw10 --enroll 5 --unknown ../shared/faces/unknown_singles --json

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser $(CLIENTS_STAMP) $(JS_STAMP) $(BROWSER_STAMP)
	# Three worker processes on two cores: the suite waits on servers, browsers and brokers as much as it
	# computes (one worker 15:37 -> two 11:08; two used 152 % of the cores, three 161 %: the whole CI
	# run 13:34 -> 11:11 on a Xeon with AMX, DEVELOPERS.md). A module's tests stay in one process
	# (loadscope): its server or browser fixture starts once.
	# The project's own bytecode, written once: these machines set PYTHONDONTWRITEBYTECODE=1 and the
	# install is editable, so every faceforge process the suite starts (servers, workers, agents, CLI
	# commands) compiled the modules it imports again: 0.7 s of a core for the API's alone (2.7 -> 2.0 s
	# to import it, AMD EPYC Zen 3). Python checks each file against its source: an edit costs that file.
	$(BIN)/python -m compileall -q src
	# The slowest tests and setups, listed at the end: CI's time is budgeted (15 minutes), and every
	# run's log says where it goes.
	$(BIN)/pytest -n 3 --dist loadscope --durations=25

# Side by side: the checks (mypy takes half a minute from cold) and the second venv's and npm's installs
# use what the suite leaves of the two cores while it waits on its servers and browsers (a CI run used
# 152 % of 200 %: 15:40 in all, 14:53 so). One make, so each install runs once; any step failing fails
# `make test`. Output is not held back per step: pytest's progress shows as it goes.
test:
	$(MAKE) --jobs=4 --no-print-directory lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench.enroll_throughput
	$(BIN)/python -m bench.accuracy_vs_face_recognition
	$(BIN)/python -m bench.register_to_ready
	$(BIN)/python -m bench.api_load
	$(BIN)/python -m bench.export_times
	$(BIN)/python -m bench.export_parity
	$(BIN)/python -m bench.embedder_choice
	$(BIN)/python -m bench.import_throughput
	$(BIN)/python -m bench.scale_curve

clean:
	rm -rf $(VENV) $(CLIENTS) $(JS_CLIENTS)/node_modules $(BROWSER_CLIENT)/node_modules .pytest_cache .mypy_cache .ruff_cache
