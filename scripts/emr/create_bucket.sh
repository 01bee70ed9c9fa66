#!/usr/bin/env bash
# create_bucket.sh: create the project's S3 bucket in eu-west-3 (Paris, data stays in the EU), or
# bring an existing one of ours to the same settings. Safe to run again.
#   - LocationConstraint = REGION (create-bucket outside us-east-1 requires it);
#   - Block Public Access: all four settings on;
#   - default encryption SSE-S3 (AES256; nothing to manage, no KMS permission needed by EMR);
#   - bucket policy bucket-policy.json: deny any request made without TLS;
#   - lifecycle bucket-lifecycle.json: abort incomplete multipart uploads after 7 days, expire
#     EMR logs (logs/) after 30 days;
#   - versioning left off: inputs are re-uploadable and outputs re-computable, versions would
#     only multiply the storage bill of ~90k images and their features;
#   - tags project=fruits, owner, data-classification.
#
# Usage: BUCKET=<your-bucket> [REGION=eu-west-3] [OWNER=<you>] [DATA_CLASSIFICATION=internal]
#        [DRY_RUN=1] scripts/emr/create_bucket.sh
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
[[ $# -eq 0 ]] || die "no arguments expected (set BUCKET=...), see --help"
require_bucket
OWNER=${OWNER:-${USER:-unknown}}
DATA_CLASSIFICATION=${DATA_CLASSIFICATION:-internal}

WORK=$(mktemp -d)
trap 'rm -rf "${WORK}"' EXIT
render "${EMR_DIR}/bucket-policy.json" "${WORK}/bucket-policy.json" "BUCKET=${BUCKET}"

if [[ ${DRY_RUN} != 1 ]] && aws s3api head-bucket --bucket "${BUCKET}" --region "${REGION}" >/dev/null 2>&1; then
  log "bucket ${BUCKET} already exists and is ours: updating its settings"
else
  log "creating bucket ${BUCKET} in ${REGION}"
  run aws s3api create-bucket --bucket "${BUCKET}" --region "${REGION}" \
    --create-bucket-configuration "LocationConstraint=${REGION}"
fi

log "blocking all public access"
run aws s3api put-public-access-block --bucket "${BUCKET}" --region "${REGION}" \
  --public-access-block-configuration \
  "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"

log "default encryption: SSE-S3 (AES256)"
run aws s3api put-bucket-encryption --bucket "${BUCKET}" --region "${REGION}" \
  --server-side-encryption-configuration \
  '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'

log "bucket policy: TLS only"
run aws s3api put-bucket-policy --bucket "${BUCKET}" --region "${REGION}" \
  --policy "file://${WORK}/bucket-policy.json"

log "lifecycle: abort stale multipart uploads, expire logs"
run aws s3api put-bucket-lifecycle-configuration --bucket "${BUCKET}" --region "${REGION}" \
  --lifecycle-configuration "file://${EMR_DIR}/bucket-lifecycle.json"

log "tags"
run aws s3api put-bucket-tagging --bucket "${BUCKET}" --region "${REGION}" \
  --tagging "TagSet=[{Key=project,Value=fruits},{Key=owner,Value=${OWNER}},{Key=data-classification,Value=${DATA_CLASSIFICATION}}]"

log "bucket s3://${BUCKET} ready in ${REGION}"
