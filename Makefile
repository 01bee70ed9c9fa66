# Fruits! featurization chain. From a fresh clone:
#   make run    the whole chain on the bundled sample -> outputs/local/
#   make test   the test suite
#   make lint   ruff: lint and format check
#   make lab    JupyterLab on notebooks/ (127.0.0.1, with a token; LAB_PORT=8888 by default)
#   make nightly  the scheduled run: incremental, into outputs/nightly (INPUT=, OUTPUT= to change)
# Each creates .venv and installs everything on first use; later calls install nothing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# Amazon States Language validator (npm) for tests/test_emr_nightly.py, pinned in tools/asl/.
ASL_VALIDATOR := tools/asl/node_modules/.bin/asl-validator
OUTPUT := outputs/local
# Spark local mode must bind to loopback (else it picks an outside address and starts slowly).
export SPARK_LOCAL_IP := 127.0.0.1
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: run test lint nightly lab bench check-java class-archive clean sample wheel

run: $(INSTALLED) check-java class-archive
	@mkdir -p $(OUTPUT)
	$(PY) -m helpers.papermill_cli notebooks/local.ipynb $(OUTPUT)/local.ipynb \
		--cwd notebooks --log-output --progress-bar \
		-p input_path $(CURDIR)/data/sample -p output_path $(CURDIR)/$(OUTPUT)
	@$(PY) -m helpers.report $(OUTPUT) --notebook $(OUTPUT)/local.ipynb

test: $(INSTALLED) $(ASL_VALIDATOR) check-java class-archive
	$(PY) -m pytest tests

# ruff's linter and formatter (config in pyproject.toml); CI runs it before the tests.
lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The scheduled run (cron, systemd timer; README "Scheduled runs"): notebooks/local.ipynb with
# papermill, incremental, into one fixed folder; the executed notebook kept in
# $(OUTPUT)/history/<run_id>/; non-zero exit status when the run fails or another one holds OUTPUT.
INPUT ?= $(CURDIR)/data/sample
nightly: OUTPUT = outputs/nightly
nightly: $(INSTALLED) check-java class-archive
	$(PY) -m helpers.scheduled --input $(INPUT) --output $(OUTPUT)

# Stop with Ctrl-C: the server, its kernels and their Spark stop together.
lab: $(INSTALLED) check-java class-archive
	$(PY) scripts/lab.py

# Benchmarks (not part of the tests): N synthetic images, medians of REPEATS runs, one run more at
# each CURVE size, oneDNN on and off; SKIP=p8,pca,memory,precision,sizes,onednn leaves parts out,
# BENCH_JSON=path writes the JSON there instead of benchmarks/results/latest.json; see
# docs/benchmarks.md.
# SCALE=full: the whole local chain (notebook + report) on 102,639 Fruits-360-shaped images in 155
# classes, a 2,000-image run for memory, then an incremental run with 1,000 new images
# (benchmarks/full.py; JSON in benchmarks/results/full.json); N=... runs it at another size.
# The generated images are cached in benchmarks/data-cache/ (or $BENCH_DATA) and reused.
# SCALE=sample: the bundled sample's notebook as make run runs it (twice), then its cells twice in
# one kernel, cold and warm (benchmarks/sample.py; JSON in benchmarks/results/sample.json).
N ?= 300
REPEATS ?= 3
CURVE ?= 100,1000,5000
bench: $(INSTALLED) check-java class-archive
ifeq ($(SCALE),sample)
	$(PY) -m benchmarks.sample $(if $(BENCH_JSON),--output $(BENCH_JSON))
else ifeq ($(SCALE),full)
	$(PY) -m benchmarks.full $(if $(filter-out file,$(origin N)),--n $(N)) \
		$(if $(BENCH_JSON),--output $(BENCH_JSON))
else
	$(PY) -m benchmarks.run --n $(N) --repeats $(REPEATS) --curve "$(CURVE)" $(if $(SKIP),--skip $(SKIP)) \
		$(if $(BENCH_JSON),--output $(BENCH_JSON))
endif

check-java:
	@$(PYTHON) scripts/check_java.py

# Local mode's JVM class archive (helpers/class_archive.py): made on first use for this Java and
# pyspark (about a minute), checked in a fifth of a second afterwards.
class-archive: $(INSTALLED) check-java
	@$(PY) -m helpers.class_archive

sample: $(INSTALLED)
	$(PY) scripts/make_sample.py

wheel: $(INSTALLED)
	$(PY) -m pip wheel --no-deps --no-build-isolation -w dist .

$(INSTALLED): requirements.txt requirements-nodeps.txt pyproject.toml scripts/lab.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		-r requirements-nodeps.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) scripts/lab.py --install-kernel
	@touch $(INSTALLED)

$(ASL_VALIDATOR): tools/asl/package.json tools/asl/package-lock.json
	npm ci --prefix tools/asl --no-audit --no-fund
	@touch $(ASL_VALIDATOR)

clean:
	rm -rf outputs .pytest_cache dist build *.egg-info
