#!/usr/bin/env bash
# upload_artifacts.sh: build the helpers wheel and put what the cluster needs under
# s3://<bucket>/artifacts/ and s3://<bucket>/notebooks/:
#   artifacts/fruits_helpers-<version>-py3-none-any.whl built here, from helpers/ and pyproject.toml
#   artifacts/requirements-emr.txt                    pinned, hash-checked cluster packages
#   artifacts/bootstrap-emr.sh                        the bootstrap action (bootstrap-actions.json)
#   notebooks/cloud.ipynb                             read by the papermill step (add_papermill_step.sh)
# The wheel is built with the documented command, from the repository root:
#   .venv/bin/python -m pip wheel --no-deps --no-build-isolation -w dist .
# after removing build/ (setuptools would otherwise pack modules deleted since the last build).
#
# Usage: BUCKET=<your-bucket> [REGION=eu-west-3] [PYTHON=.venv/bin/python] [DRY_RUN=1]
#        scripts/emr/upload_artifacts.sh [--no-build]
#   --no-build  upload dist/fruits_helpers-<version>-py3-none-any.whl as it is.
# <version> is the one in pyproject.toml (read by cluster.py helpers-wheel, with python3).
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
BUILD=1
for arg in "$@"; do
  case ${arg} in
    --no-build) BUILD=0 ;;
    *) die "unknown argument ${arg}, see --help" ;;
  esac
done
require_bucket
PYTHON=${PYTHON:-${REPO_ROOT}/.venv/bin/python}

cd "${REPO_ROOT}"
if [[ ${BUILD} == 1 ]]; then
  log "building the helpers wheel"
  run rm -rf build
  run "${PYTHON}" -m pip wheel --no-deps --no-build-isolation -w dist .
fi
WHEEL=dist/$(python3 "${EMR_DIR}/cluster.py" helpers-wheel)
[[ ${DRY_RUN} == 1 || -f ${WHEEL} ]] || die "no ${WHEEL}: build it first (drop --no-build)"
[[ -f notebooks/cloud.ipynb ]] || die "no notebooks/cloud.ipynb to upload"

DEST=s3://${BUCKET}/${ARTIFACTS_PREFIX}
for file in "${WHEEL}" requirements-emr.txt bootstrap-emr.sh; do
  log "upload ${file} -> ${DEST}/"
  run aws s3 cp --region "${REGION}" --only-show-errors "${file}" "${DEST}/${file##*/}"
done
log "upload notebooks/cloud.ipynb -> s3://${BUCKET}/${NOTEBOOKS_PREFIX}/"
run aws s3 cp --region "${REGION}" --only-show-errors notebooks/cloud.ipynb \
  "s3://${BUCKET}/${NOTEBOOKS_PREFIX}/cloud.ipynb"
log "done: bootstrap action s3://${BUCKET}/${ARTIFACTS_PREFIX}/bootstrap-emr.sh"
