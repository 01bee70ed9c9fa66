# Fruits! featurization chain. From a fresh clone:
#   make run    the whole chain on the bundled sample -> outputs/local/
#   make test   the test suite
#   make lab    JupyterLab on notebooks/ (127.0.0.1, with a token; LAB_PORT=8888 by default)
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

.PHONY: run test lab bench check-java clean sample wheel

run: $(INSTALLED) check-java
	@mkdir -p $(OUTPUT)
	$(PY) -m papermill notebooks/local.ipynb $(OUTPUT)/local.ipynb \
		--cwd notebooks --log-output --progress-bar \
		-p input_path $(CURDIR)/data/sample -p output_path $(CURDIR)/$(OUTPUT)
	@$(PY) -m helpers.report $(OUTPUT) --notebook $(OUTPUT)/local.ipynb

test: $(INSTALLED) $(ASL_VALIDATOR) check-java
	$(PY) -m pytest tests

# Stop with Ctrl-C: the server, its kernels and their Spark stop together.
lab: $(INSTALLED) check-java
	$(PY) scripts/lab.py

# Benchmarks (not part of the tests): N synthetic images, medians of REPEATS runs, one run more at
# each CURVE size; see docs/benchmarks.md.
N ?= 300
REPEATS ?= 3
CURVE ?= 100,1000,5000
bench: $(INSTALLED) check-java
	$(PY) -m benchmarks.run --n $(N) --repeats $(REPEATS) --curve "$(CURVE)" $(if $(SKIP),--skip $(SKIP))

check-java:
	@$(PYTHON) scripts/check_java.py

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
