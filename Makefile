# softeq: `make run` runs the embedded default end to end; `make test` runs every check.
# Both create .venv when it is missing and install the project into it (fast when installed).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU/CUDA wheels of torch this machine serves; the pins match pyproject's bounds.
TORCH := torch==2.14.1 torchvision==0.29.1

SNAKEMAKE := PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake

.PHONY: run run-extended run-regression test test-slurm lint lint-workflow format install clean docs-figures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[workflow,seg,canon,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(SNAKEMAKE) all --cores 2 --configfile config/config.yaml
	$(SNAKEMAKE) all --configfile config/config.yaml --report results/report.html

# the embedded study's heavier half (config/extended.yaml) on top of the embedded default
run-extended: $(STAMP)
	$(SNAKEMAKE) all --cores 2 --configfile config/config.yaml config/extended.yaml

# the O(5) regression on a CPU in minutes (config/regression.yaml): its table and figure, and
# the SO(3) demo's figure
run-regression: $(STAMP)
	$(SNAKEMAKE) all_o5 all_so3 --cores 2 --configfile config/regression.yaml

# the README's figures: small copies of the embedded default's (after `make run`)
docs-figures: $(STAMP)
	$(BIN)/python tools/docs_figures.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# workflow checks: lint, format, and offline dry-runs of the configs (paper.yaml also with the
# slurm profile)
lint-workflow: $(STAMP)
	$(BIN)/snakefmt --check workflow
	$(SNAKEMAKE) --lint --configfile config/config.yaml
	$(SNAKEMAKE) -n -q all --configfile config/config.yaml
	$(SNAKEMAKE) -n -q all --configfile config/config.yaml config/extended.yaml
	$(SNAKEMAKE) -n -q all --configfile config/paper.yaml
	$(SNAKEMAKE) -n -q all --configfile config/selection.yaml
	$(SNAKEMAKE) -n -q all --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm

# a real single-node Slurm cluster (needs root: apt, /etc/slurm), a reduced DAG through the
# project's slurm profile, then the daemons it started are stopped
test-slurm: $(STAMP)
	@if [ "$$(id -u)" != 0 ] && [ -z "$$CI" ]; then \
		echo "test-slurm: skipped: starting a Slurm cluster needs root (CI runs it as root)"; \
	else PATH=$(CURDIR)/$(BIN):$$PATH bash tools/slurm/ci_run.sh; fi

test: lint lint-workflow
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest
	$(MAKE) test-slurm

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
