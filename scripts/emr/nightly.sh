#!/usr/bin/env bash
# nightly.sh: the nightly featurization on AWS as one CloudFormation stack (nightly.yaml):
# deploy it, describe it, start a run now, remove it.
# Every night (SCHEDULE_EXPRESSION in SCHEDULE_TIMEZONE, default 02:00 Europe/Paris, within a
# FLEXIBLE_WINDOW_MINUTES window) EventBridge Scheduler starts the Step Functions state machine:
#   1. a small Lambda function checks whether an image under INPUT_PATH is newer than the run
#      published in OUTPUT_PATH (its manifest.json); if none is, the run ends there: no cluster;
#   2. createCluster.sync starts the cluster of create_cluster.sh (cluster.py: same release,
#      applications, nodes, bootstrap, configurations, roles, logs, tags, idle auto-termination);
#   3. addStep.sync runs cloud.ipynb with papermill (incremental, STEP_TIMEOUT_MINUTES at most)
#      into OUTPUT_PATH; the executed notebook goes to OUTPUT_PATH/history/<run_id>/;
#   4. the cluster is terminated, on success and on every failure path;
#   5. the SNS topic (NOTIFICATION_EMAIL subscribed) gets the run's summary, or the failing state
#      and where its logs are.
# First: upload_artifacts.sh, create_instance_profile.sh, `aws emr create-default-roles`.
#
# Usage: BUCKET=<your-bucket> scripts/emr/nightly.sh deploy|describe|run-now|remove
#   deploy    render the template (nightly.py) and `aws cloudformation deploy` it (create/update)
#   describe  the stack's status and outputs, and the last runs of the state machine
#   run-now   start one run now (execution name manual-<UTC time>)
#   remove    delete the stack; refused while a run is in progress (FORCE=1 removes anyway);
#             the bucket and the outputs stay
# Environment:
#   BUCKET                the project bucket (required)
#   STACK_NAME            default fruits-nightly (also the cluster's name and fruits-nightly tag)
#   INPUT_PATH            default s3://BUCKET/fruits-360
#   OUTPUT_PATH           default s3://BUCKET/outputs/nightly (must be under outputs/)
#   NOTEBOOK_URI          default s3://BUCKET/notebooks/cloud.ipynb
#   SCHEDULE_EXPRESSION   default cron(0 2 * * ? *)     SCHEDULE_TIMEZONE  default Europe/Paris
#   FLEXIBLE_WINDOW_MINUTES  default 15
#   NOTIFICATION_EMAIL    subscribed to the topic (confirm AWS's email once); default none
#   STEP_TIMEOUT_MINUTES  default 180                   CREATE_TIMEOUT_MINUTES  default 60
#   COST_PER_HOUR         USD per hour of the cluster, for the run's cost estimate
#                         (default: scripts/emr/instances.py's price of a node of
#                         INSTANCE_TYPE; 0.28 per m6i.xlarge node: 0.84 for 1 + 2)
#   INSTANCE_TYPE, CORE_COUNT, RELEASE_LABEL, INSTANCE_PROFILE, SERVICE_ROLE, IDLE_TIMEOUT,
#   EBS_ROOT_GB, OWNER, DATA_CLASSIFICATION, SUBNET_ID, KEY_NAME (optional)
#                         the cluster, as for create_cluster.sh
#   FORCE=1               remove even while a run is in progress (its cluster ends when idle)
#   REGION default eu-west-3; PYTHON default python3; RENDER_DIR keeps the rendered template
#   DRY_RUN=1             print the plan: the rendered template, its parameters and every aws
#                         command, and run none
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
[[ $# -eq 1 ]] || die "one action expected: deploy, describe, run-now or remove (see --help)"
ACTION=$1
[[ ${ACTION} =~ ^(deploy|describe|run-now|remove)$ ]] || die "unknown action '${ACTION}' (deploy, describe, run-now or remove)"
require_bucket
STACK_NAME=${STACK_NAME:-fruits-nightly}
[[ ${STACK_NAME} =~ ^[A-Za-z][A-Za-z0-9-]{0,100}$ ]] || die "STACK_NAME='${STACK_NAME}' is not a stack name"
PYTHON=${PYTHON:-python3}
FORCE=${FORCE:-0}
export BUCKET STACK_NAME REGION

# state_machine: the ARN of the stack's state machine, named after the stack (a placeholder with
# DRY_RUN=1).
state_machine() {
  local value
  value=$(capture '<state-machine-arn>' aws stepfunctions list-state-machines --region "${REGION}" \
    --query "stateMachines[?name=='${STACK_NAME}'].stateMachineArn" --output text)
  [[ ${value} == arn:* || ${DRY_RUN} == 1 ]] || die "no state machine ${STACK_NAME} in ${REGION}: deploy the stack first"
  printf '%s\n' "${value}"
}

deploy() {
  local template parameters_text
  if [[ -n ${RENDER_DIR:-} ]]; then
    mkdir -p "${RENDER_DIR}"
  else
    RENDER_DIR=$(mktemp -d)
    [[ ${DRY_RUN} == 1 ]] || trap 'rm -rf "${RENDER_DIR}"' EXIT
  fi
  template=${RENDER_DIR}/nightly.yaml
  "${PYTHON}" "${EMR_DIR}/nightly.py" template --out "${template}"
  parameters_text=$("${PYTHON}" "${EMR_DIR}/nightly.py" parameters)
  local -a parameters
  mapfile -t parameters <<<"${parameters_text}"
  log "template rendered: ${template}"
  if [[ ${DRY_RUN} == 1 ]]; then
    {
      printf '# --- rendered template %s ---\n' "${template}"
      sed 's/^/# /' "${template}"
      printf '# --- end of the template; parameters: %s ---\n' "${parameters[*]}"
    } >&3
  fi
  log "deploying stack ${STACK_NAME} in ${REGION} (schedule, state machine, roles, topic, function)"
  run aws cloudformation deploy --region "${REGION}" --stack-name "${STACK_NAME}" \
    --template-file "${template}" --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides "${parameters[@]}" \
    --tags project=fruits "owner=${OWNER:-${USER:-unknown}}"
  log "deployed; see it with: scripts/emr/nightly.sh describe"
  [[ -z ${NOTIFICATION_EMAIL:-} ]] || log "confirm the subscription in the email AWS sent to ${NOTIFICATION_EMAIL}"
}

describe() {
  local machine
  machine=$(state_machine)
  run aws cloudformation describe-stacks --region "${REGION}" --stack-name "${STACK_NAME}" \
    --query 'Stacks[0].{status:StackStatus,outputs:Outputs[].[OutputKey,OutputValue]}' --output json
  log "last runs (newest first):"
  run aws stepfunctions list-executions --region "${REGION}" --state-machine-arn "${machine}" \
    --max-items 10 --query 'executions[].[name,status,startDate,stopDate]' --output text
}

run_now() {
  local machine name
  machine=$(state_machine)
  name=manual-$(date -u '+%Y%m%dT%H%M%SZ')
  log "starting run ${name}"
  run aws stepfunctions start-execution --region "${REGION}" --state-machine-arn "${machine}" \
    --name "${name}" --input '{}' --query executionArn --output text
}

remove() {
  local machine running
  machine=$(state_machine)
  running=$(capture '' aws stepfunctions list-executions --region "${REGION}" --state-machine-arn "${machine}" \
    --status-filter RUNNING --query 'executions[].name' --output text)
  if [[ -n ${running} && ${running} != None ]]; then
    [[ ${FORCE} == 1 ]] || die "run(s) in progress: ${running}; wait for them to end (they terminate their cluster) or set FORCE=1"
    log "FORCE=1: removing while ${running} runs; its cluster ends itself when idle"
  fi
  log "deleting stack ${STACK_NAME} (the bucket and the outputs stay)"
  run aws cloudformation delete-stack --region "${REGION}" --stack-name "${STACK_NAME}"
  run aws cloudformation wait stack-delete-complete --region "${REGION}" --stack-name "${STACK_NAME}"
  log "stack ${STACK_NAME} removed"
}

case ${ACTION} in
  deploy) deploy ;;
  describe) describe ;;
  run-now) run_now ;;
  remove) remove ;;
esac
