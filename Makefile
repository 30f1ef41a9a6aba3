# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv when missing and installs the pinned dependencies (constraints.txt) plus this project
# (editable, so the Libs, Resources and console scripts come from this tree).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: all install lint test test-all demo clean kspace-model bench-recon-kspace ivim-models recon-model bench-ivim bench-registration bench-recon bench-recon-generalisation bench-reading-station

all: test

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,lint]"
	@touch $@

install: $(STAMP)

# The lint and type gate: ruff (lint and format) and mypy over the whole tree (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The tests without the slow ones (marked `slow`); `make test-all` (and CI) run every test.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" Testing

test-all: $(STAMP)
	$(BIN)/python -m pytest -q Testing

demo: $(STAMP)
	$(BIN)/fastmrrecon sample-data $(DEMO_DIR)/head
	$(BIN)/fastmrrecon demo $(DEMO_DIR)/head $(DEMO_DIR)/reconstruction
	$(BIN)/ivimestimator sample-data $(DEMO_DIR)/ivim
	$(BIN)/ivimestimator demo $(DEMO_DIR)/ivim $(DEMO_DIR)/ivim
	@echo "Sample data in $(DEMO_DIR)/: load the .nrrd files in Slicer (drag and drop)."

# Retrain the shipped IVIM networks (IVIMEstimator/Resources/Models/IVIMEstimator: files, cards, manifest).
ivim-models: $(STAMP)
	$(BIN)/python -m IVIMEstimatorLib.training.shipped_models

# Rebuild the shipped reconstruction network (FastMRRecon/Resources/Models/FastMRRecon); needs ../shared/data/synthseg.
recon-model: $(STAMP)
	$(BIN)/python -m FastMRReconLib.training.shipped_model --work-dir build/recon-model

# Train the shipped raw k-space network (unrolled, data-consistent); needs ../shared/data/synthseg and realmr.
kspace-model: $(STAMP)
	$(BIN)/python -m FastMRReconLib.training.shipped_kspace_model --work-dir build/recon-model

# Benchmarks (not tests): each writes docs/benchmarks/<name>.md with its plots.
bench-ivim: $(STAMP)
	$(BIN)/python benchmarks/bench_ivim.py
	$(BIN)/python benchmarks/bench_ivim_scale_free.py

bench-registration: $(STAMP)
	$(BIN)/python benchmarks/bench_registration.py

# BART (the classic CS peer) from Debian when missing.
bench-recon: $(STAMP)
	@command -v bart >/dev/null || (apt-get install -y bart || sudo apt-get install -y bart)
	$(BIN)/python benchmarks/bench_recon.py
	$(BIN)/python benchmarks/bench_recon_do_no_harm.py

# The raw k-space network against CG-SENSE and BART CS-SENSE, on real k-space (../shared/data/realmr).
# 10 simulated readers (9 over HTTP, 1 Chromium page) on one reading station; needs Chromium (apt-get install chromium).
bench-reading-station: $(STAMP)
	$(BIN)/python benchmarks/bench_reading_station.py

bench-recon-kspace: $(STAMP)
	@command -v bart >/dev/null || (apt-get install -y bart || sudo apt-get install -y bart)
	$(BIN)/python benchmarks/bench_recon_kspace.py

# Leave-one-contrast-out and leave-one-orientation-out networks (needs the pairs of `make recon-model`).
bench-recon-generalisation: $(STAMP)
	$(BIN)/python benchmarks/bench_recon_generalisation.py --split contrast
	$(BIN)/python benchmarks/bench_recon_generalisation.py --split orientation

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build *.egg-info
