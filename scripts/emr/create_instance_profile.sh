#!/usr/bin/env bash
# create_instance_profile.sh: create (or update) the IAM role and instance profile that the EMR
# nodes run with, scoped to the project bucket, instead of the broad EMR_EC2_DefaultRole
# (AmazonElasticMapReduceforEC2Role grants s3:* on every bucket and is being deprecated).
#   - role <name> trusted by ec2.amazonaws.com (ec2-trust-policy.json);
#   - inline policy fruits-s3-scoped = iam-instance-profile-policy.json with {{BUCKET}} replaced:
#     list the bucket, read fruits-360/ sample/ artifacts/ notebooks/, read-write outputs/ and
#     jupyter/, write logs/; nothing else;
#   - instance profile of the same name (EMR requires role and profile names to match).
# The EMR service role is not made here: run `aws emr create-default-roles` once per account.
# Safe to run again: existing role and profile are kept, the inline policy is overwritten.
#
# Usage: BUCKET=<your-bucket> [ROLE_NAME=fruits-emr-ec2] [DRY_RUN=1] scripts/emr/create_instance_profile.sh
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
[[ $# -eq 0 ]] || die "no arguments expected, see --help"
require_bucket
ROLE_NAME=${ROLE_NAME:-fruits-emr-ec2}

WORK=$(mktemp -d)
trap 'rm -rf "${WORK}"' EXIT
render "${EMR_DIR}/iam-instance-profile-policy.json" "${WORK}/policy.json" "BUCKET=${BUCKET}"

exists() {  # exists CMD...: true when the aws read command succeeds (always false in DRY_RUN)
  [[ ${DRY_RUN} != 1 ]] && "$@" >/dev/null 2>&1
}

if exists aws iam get-role --role-name "${ROLE_NAME}"; then
  log "role ${ROLE_NAME} already exists"
else
  log "creating role ${ROLE_NAME}"
  run aws iam create-role --role-name "${ROLE_NAME}" \
    --assume-role-policy-document "file://${EMR_DIR}/ec2-trust-policy.json" \
    --tags Key=project,Value=fruits
fi
log "inline policy fruits-s3-scoped (bucket ${BUCKET})"
run aws iam put-role-policy --role-name "${ROLE_NAME}" --policy-name fruits-s3-scoped \
  --policy-document "file://${WORK}/policy.json"

if exists aws iam get-instance-profile --instance-profile-name "${ROLE_NAME}"; then
  log "instance profile ${ROLE_NAME} already exists"
else
  log "creating instance profile ${ROLE_NAME}"
  run aws iam create-instance-profile --instance-profile-name "${ROLE_NAME}"
fi
roles=""
if [[ ${DRY_RUN} != 1 ]]; then
  roles=$(aws iam get-instance-profile --instance-profile-name "${ROLE_NAME}" \
    --query 'InstanceProfile.Roles[].RoleName' --output text)
fi
if [[ " ${roles} " == *" ${ROLE_NAME} "* ]]; then
  log "role already in the instance profile"
else
  run aws iam add-role-to-instance-profile --instance-profile-name "${ROLE_NAME}" --role-name "${ROLE_NAME}"
fi
log "done: create the cluster with INSTANCE_PROFILE=${ROLE_NAME}"
