#!/usr/bin/env bash
# add_papermill_step.sh: run notebooks/cloud.ipynb headless on the cluster, as an EMR step.
# The step runs on the primary node through command-runner.jar:
#   /opt/fruits/venv/bin/papermill --kernel python3 <notebook> <output_path>/cloud.executed.ipynb
#     -r input_path ... -r output_path ... [-p variance_target ...] [-p k ...] [-p image_size ...]
#     [-r weights ...] [-p sample_limit ...]
# Only the parameters that differ from the notebook's defaults are passed, and never an empty
# string: EMR's command-runner.jar drops empty arguments, which would break papermill's options
# (`Option '-r' requires 2 arguments`). The cloud notebook's defaults already suit EMR
# (s3_endpoint "" for EMR's own S3 access, spark_master "" so its Spark session runs on YARN).
# papermill reads the notebook from S3 and writes the executed notebook (with its outputs and
# errors) next to the run's results, in S3; "python3" is the venv's kernel registered by
# bootstrap-emr.sh.
#
# Usage: CLUSTER_ID=j-XXXXXXXXXXXXX BUCKET=<your-bucket> [RUN=<run-name>] scripts/emr/add_papermill_step.sh
# Environment (notebook parameters first):
#   INPUT_PATH       default s3://BUCKET/fruits-360 (use s3://BUCKET/sample for a smoke test)
#   OUTPUT_PATH      default s3://BUCKET/outputs/RUN
#   VARIANCE_TARGET  default empty (the notebook's 0.95)
#   K                default empty (None: chosen by variance)
#   IMAGE_SIZE       default empty (the notebook's 224)
#   WEIGHTS          default empty (the notebook's torchvision)
#   SAMPLE_LIMIT     default empty (None: all images)
#   RUN              run name, default run-<UTC timestamp>
#   NOTEBOOK_URI     default s3://BUCKET/notebooks/cloud.ipynb (upload_artifacts.sh puts it there)
#   ACTION_ON_FAILURE  default CONTINUE (the cluster stays up; it auto-terminates when idle)
#   REGION default eu-west-3; DRY_RUN=1 prints the aws command; RENDER_DIR keeps the step JSON
# Prints the step id; follow it with `aws emr describe-step --cluster-id ... --step-id ...`.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
[[ $# -eq 0 ]] || die "no arguments expected (use the variables), see --help"
require_bucket
[[ ${CLUSTER_ID:-} =~ ^j-[A-Z0-9]+$ ]] || die "set CLUSTER_ID to the cluster id (j-...), got '${CLUSTER_ID:-}'"
RUN=${RUN:-run-$(date -u '+%Y%m%dT%H%M%SZ')}
[[ ${RUN} =~ ^[A-Za-z0-9._-]+$ ]] || die "RUN='${RUN}' must be a simple name (letters, digits, . _ -)"
INPUT_PATH=${INPUT_PATH:-s3://${BUCKET}/${DATA_PREFIX}}
OUTPUT_PATH=${OUTPUT_PATH:-s3://${BUCKET}/${OUTPUTS_PREFIX}/${RUN}}
OUTPUT_PATH=${OUTPUT_PATH%/}
NOTEBOOK_URI=${NOTEBOOK_URI:-s3://${BUCKET}/${NOTEBOOKS_PREFIX}/cloud.ipynb}
VARIANCE_TARGET=${VARIANCE_TARGET:-}
K=${K:-}
IMAGE_SIZE=${IMAGE_SIZE:-}
WEIGHTS=${WEIGHTS:-}
SAMPLE_LIMIT=${SAMPLE_LIMIT:-}
ACTION_ON_FAILURE=${ACTION_ON_FAILURE:-CONTINUE}

[[ ${INPUT_PATH} == s3://* && ${OUTPUT_PATH} == s3://* && ${NOTEBOOK_URI} == s3://*.ipynb ]] \
  || die "INPUT_PATH, OUTPUT_PATH and NOTEBOOK_URI must be s3:// locations"
[[ -z ${VARIANCE_TARGET} || ${VARIANCE_TARGET} =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] \
  || die "VARIANCE_TARGET must be in (0, 1], got '${VARIANCE_TARGET}'"
[[ -z ${IMAGE_SIZE} || ${IMAGE_SIZE} =~ ^[1-9][0-9]*$ ]] || die "IMAGE_SIZE must be a number of pixels"
[[ -z ${WEIGHTS} || ${WEIGHTS} =~ ^[A-Za-z0-9._:/-]+$ ]] || die "WEIGHTS='${WEIGHTS}' has unexpected characters"
[[ -z ${K} || ${K} =~ ^[1-9][0-9]*$ ]] || die "K must be empty or a positive number"
[[ -z ${SAMPLE_LIMIT} || ${SAMPLE_LIMIT} =~ ^[1-9][0-9]*$ ]] || die "SAMPLE_LIMIT must be empty or a positive number"
[[ ${ACTION_ON_FAILURE} =~ ^(CONTINUE|CANCEL_AND_WAIT|TERMINATE_CLUSTER)$ ]] || die "bad ACTION_ON_FAILURE"

# json_string VALUE: VALUE as a JSON string (backslash and double quote escaped; control
# characters refused).
json_string() {
  local value=$1
  [[ -n ${value} ]] || die "empty step argument (command-runner.jar would drop it)"
  [[ ${value} != *[[:cntrl:]]* ]] || die "control character in a step argument"
  value=${value//\\/\\\\}
  value=${value//\"/\\\"}
  printf '"%s"' "${value}"
}

args=(/opt/fruits/venv/bin/papermill --kernel python3 --log-output
  "${NOTEBOOK_URI}" "${OUTPUT_PATH}/cloud.executed.ipynb"
  -r input_path "${INPUT_PATH}"
  -r output_path "${OUTPUT_PATH}")
[[ -z ${VARIANCE_TARGET} ]] || args+=(-p variance_target "${VARIANCE_TARGET}")
[[ -z ${K} ]] || args+=(-p k "${K}")
[[ -z ${IMAGE_SIZE} ]] || args+=(-p image_size "${IMAGE_SIZE}")
[[ -z ${WEIGHTS} ]] || args+=(-r weights "${WEIGHTS}")
[[ -z ${SAMPLE_LIMIT} ]] || args+=(-p sample_limit "${SAMPLE_LIMIT}")

if [[ -n ${RENDER_DIR:-} ]]; then
  mkdir -p "${RENDER_DIR}"
else
  RENDER_DIR=$(mktemp -d)
  [[ ${DRY_RUN} == 1 ]] || trap 'rm -rf "${RENDER_DIR}"' EXIT
fi
STEPS=${RENDER_DIR}/steps.json
{
  printf '[\n  {\n    "Type": "CUSTOM_JAR",\n    "Name": %s,\n' "$(json_string "fruits-papermill-${RUN}")"
  printf '    "ActionOnFailure": "%s",\n    "Jar": "command-runner.jar",\n    "Args": [' "${ACTION_ON_FAILURE}"
  sep=""
  for arg in "${args[@]}"; do
    printf '%s\n      %s' "${sep}" "$(json_string "${arg}")"
    sep=","
  done
  printf '\n    ]\n  }\n]\n'
} >"${STEPS}"
log "step file ${STEPS}; executed notebook: ${OUTPUT_PATH}/cloud.executed.ipynb"

STEP_ID=$(capture 's-DRYRUN' aws emr add-steps --region "${REGION}" --cluster-id "${CLUSTER_ID}" \
  --steps "file://${STEPS}" --query 'StepIds[0]' --output text)
log "step ${STEP_ID} added; follow it with:"
log "  aws emr describe-step --region ${REGION} --cluster-id ${CLUSTER_ID} --step-id ${STEP_ID} --query Step.Status"
log "results: ${OUTPUT_PATH}/ (features/ pca/ pca_csv/ failed/ variance.png manifest.json cloud.executed.ipynb)"
printf '%s\n' "${STEP_ID}"
