# shellcheck shell=bash
# common.sh: shared settings and functions of the scripts in scripts/emr/ (sourced, not run).
#
# S3 layout of the project bucket (the IAM policy iam-instance-profile-policy.json is scoped to it):
#   s3://<bucket>/fruits-360/   the Fruits-360 images (<Split>/<Class>/*.jpg)   read by the cluster
#   s3://<bucket>/sample/       data/sample, for a smoke test                   read by the cluster
#   s3://<bucket>/artifacts/    bootstrap-emr.sh, requirements-emr.txt, wheel  read by the cluster
#   s3://<bucket>/notebooks/    cloud.ipynb for headless (papermill) runs      read by the cluster
#   s3://<bucket>/outputs/      one folder per run                             written by the cluster
#   s3://<bucket>/jupyter/      JupyterHub notebooks (jupyter-s3-conf)         written by the cluster
#   s3://<bucket>/logs/         EMR logs (--log-uri)                           written by the cluster
# Environment read by every script: REGION (default eu-west-3), DRY_RUN=1 prints the aws
# commands instead of running them, ENDPOINT_URL sends every aws call to that endpoint
# (--endpoint-url; the tests point it at a local server).

REGION=${REGION:-eu-west-3}
DRY_RUN=${DRY_RUN:-0}
EMR_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "${EMR_DIR}/../.." && pwd)
export REGION DRY_RUN EMR_DIR REPO_ROOT
# shellcheck disable=SC2034  # used by the scripts that source this file
readonly DATA_PREFIX=fruits-360 SAMPLE_PREFIX=sample ARTIFACTS_PREFIX=artifacts
# shellcheck disable=SC2034
readonly NOTEBOOKS_PREFIX=notebooks OUTPUTS_PREFIX=outputs JUPYTER_PREFIX=jupyter LOGS_PREFIX=logs

log() {
  printf '%s [%s] %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$(basename "$0")" "$*" >&2
}

die() {
  log "ERROR: $*"
  exit 1
}

on_error() {
  log "FAILED: exit status $1 at line $2: $3"
  exit "$1"
}

# Print the header comment of the calling script (from line 2 to the first non-comment line).
usage() {
  awk 'NR > 1 { if ($0 !~ /^#/) exit; sub(/^# ?/, ""); print }' "$0"
}

# help_requested ARGS...: true when one of the arguments is -h or --help.
help_requested() {
  local arg
  for arg in "$@"; do
    [[ ${arg} == "-h" || ${arg} == "--help" ]] && return 0
  done
  return 1
}

# Dry-run lines go to file descriptor 3, a copy of the script's stdout, so that they reach the
# terminal even from inside $(...).
exec 3>&1

# aws ARGS...: the AWS CLI, with --endpoint-url ENDPOINT_URL when ENDPOINT_URL is set (AWS CLI v1
# ignores AWS_ENDPOINT_URL for some services, `aws emr` among them).
aws() {
  if [[ -n ${ENDPOINT_URL:-} ]]; then
    command aws --endpoint-url "${ENDPOINT_URL}" "$@"
  else
    command aws "$@"
  fi
}

# run CMD...: run a command, or print it (shell-quoted, one line) when DRY_RUN=1.
run() {
  local line
  if [[ ${DRY_RUN} == 1 ]]; then
    line=$(printf '%q ' "$@")
    printf '%s\n' "${line% }" >&3
  else
    "$@"
  fi
}

# capture PLACEHOLDER CMD...: print the output of a command that reads something from AWS; when
# DRY_RUN=1, print the command (to fd 3) and return PLACEHOLDER instead.
capture() {
  local placeholder=$1
  shift
  if [[ ${DRY_RUN} == 1 ]]; then
    run "$@"
    printf '%s\n' "${placeholder}"
  else
    "$@"
  fi
}

# require_bucket: check that BUCKET holds a valid S3 bucket name (also keeps sed safe below).
require_bucket() {
  [[ -n ${BUCKET:-} ]] || die "set BUCKET to the project's S3 bucket name, e.g. BUCKET=<your-bucket>"
  [[ ${BUCKET} =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "BUCKET='${BUCKET}' is not a valid S3 bucket name"
}

# render TEMPLATE OUT NAME=VALUE...: copy a JSON template, replacing "{{#NAME}}" (quotes included)
# by a bare number and {{NAME}} by a string; fails if a placeholder is left or the value is unsafe.
render() {
  local template=$1 out=$2 pair name value
  local -a exprs=(-e '')  # sed needs one expression even with no pairs
  shift 2
  for pair in "$@"; do
    name=${pair%%=*}
    value=${pair#*=}
    [[ ${value} =~ ^[A-Za-z0-9._:/@+-]*$ ]] || die "unsafe value for ${name}: '${value}'"
    exprs+=(-e "s|\"{{#${name}}}\"|${value}|g" -e "s|{{${name}}}|${value}|g")
  done
  sed "${exprs[@]}" "${template}" >"${out}"
  if grep -q '{{' "${out}"; then
    die "placeholder left in ${out}: $(grep -o '{{[^}]*}}' "${out}" | head -1)"
  fi
}
