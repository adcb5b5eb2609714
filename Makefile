# The README's commands. Everything lands in .venv and interop/node_modules.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: start test proto bench sim fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The js-libp2p peer the interop tests run against (versions pinned by the lock file).
interop/node_modules/.installed: interop/package.json interop/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd interop && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the interop tests will be skipped (they fail under CI=true)"; \
	fi

## make start: run a node with the default configuration
start: $(VENV)/.installed
	$(BIN)/guts start

## make test: the whole suite (type check, unit, conformance, interop against js-libp2p)
test: $(VENV)/.installed-test interop/node_modules/.installed
	$(BIN)/mypy
	$(BIN)/pytest

## make proto: regenerate guts/pb from proto/
proto: $(VENV)/.installed-test
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=guts/pb --pyi_out=guts/pb proto/*.proto

## make bench: benchmarks side by side with py-libp2p
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

## make sim: the DHT, gossip and repository propagation simulations (tables also go to BENCHMARKS.md with --write)
sim: $(VENV)/.installed-test
	$(BIN)/python -m bench.sim $(SIMFLAGS)

## make fuzz: every decoder's fuzz target for FUZZ_SECONDS each; what they find
## goes to fuzz/corpus/, minimised back within its bounds (python -m fuzz --merge)
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.installed-test
	$(BIN)/python -m fuzz --all --seconds $(FUZZ_SECONDS)
	$(BIN)/python -m fuzz --merge

clean:
	rm -rf $(VENV) interop/node_modules .pytest_cache .mypy_cache .bench
