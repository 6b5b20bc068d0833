# Two commands on a fresh machine: `make run` (app on the demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo-workspace
STAMP := $(VENV)/.installed

.PHONY: install bytecode demo run test lint bench package package-check screenshots clean system-deps-run system-deps-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, as the CPU build, only when no torch is present (a bare requirement may pull CUDA).
# Where the package index serves torch's CUDA build by default (PyPI on Linux), name the CPU index:
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0 $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The engine's modules compiled ahead, as pip does for a wheel: an editable install leaves them as source, and
# where Python may not write its cache (PYTHONDONTWRITEBYTECODE) every command compiled them again (~0.25 s).
bytecode: $(STAMP)
	$(PY) -m compileall -q core app bench >/dev/null

# built when missing, and built again when a stopped build left its marker (the app would refuse it)
demo: $(STAMP)
	@if [ ! -f $(DEMO)/embridge.db ] || [ -f $(DEMO)/.embridge-demo-unfinished ]; then \
		$(VENV)/bin/embridge demo --workspace $(DEMO); fi

# system libraries (Qt's xcb plugin; chromium for the HTML report test): installed when root, else named
system-deps-run: $(STAMP)
	PYTHON=$(PY) sh packaging/system-deps.sh run

system-deps-test: $(STAMP)
	PYTHON=$(PY) sh packaging/system-deps.sh test

run: $(STAMP) system-deps-run bytecode demo
	$(VENV)/bin/embridge-gui --workspace $(DEMO)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: $(STAMP) system-deps-test bytecode
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP) bytecode
	$(PY) -m bench.run_all

package: $(STAMP)
	$(PY) -m pip install --quiet -e ".[package]"
	$(VENV)/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build packaging/embridge.spec

package-check:
	dist/embridge/embridge --self-test

screenshots: $(STAMP) demo
	QT_QPA_PLATFORM=offscreen $(PY) -m embridge.app.screenshots --workspace $(DEMO) --out docs/screenshots --prepare

clean:
	rm -rf build dist $(DEMO) .pytest_cache .ruff_cache
