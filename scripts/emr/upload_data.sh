#!/usr/bin/env bash
# upload_data.sh: copy the images to the project bucket with `aws s3 sync` (only new or changed
# files travel, so it can be run again after an interruption).
#   - the Fruits-360 folders <fruits-360-dir>/Training and <fruits-360-dir>/Test (whichever
#     exist) go to s3://<bucket>/fruits-360/Training/ and .../Test/ (the notebook's input_path is
#     then s3://<bucket>/fruits-360);
#   - data/sample of this repository, when present, goes to s3://<bucket>/sample/ for a smoke test
#     (input_path s3://<bucket>/sample).
# Only image files (.jpg, .jpeg, .png, any case) are sent.
#
# Usage: BUCKET=<your-bucket> [REGION=eu-west-3] [DRY_RUN=1] scripts/emr/upload_data.sh [<fruits-360-dir>]
#   <fruits-360-dir>  the unpacked data set folder holding Training/ and Test/; without it only
#                     data/sample is uploaded.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
[[ $# -le 1 ]] || die "at most one argument (the Fruits-360 folder), see --help"
require_bucket

sync_images() {
  local src=$1 dest=$2
  log "sync ${src} -> ${dest}"
  run aws s3 sync "${src}" "${dest}" --region "${REGION}" --only-show-errors \
    --exclude '*' --include '*.jpg' --include '*.jpeg' --include '*.png' \
    --include '*.JPG' --include '*.JPEG' --include '*.PNG'
}

uploaded=0
if [[ $# -eq 1 ]]; then
  FRUITS_DIR=${1%/}
  [[ -d ${FRUITS_DIR} ]] || die "no folder ${FRUITS_DIR}"
  for split in Training Test; do
    if [[ -d ${FRUITS_DIR}/${split} ]]; then
      sync_images "${FRUITS_DIR}/${split}" "s3://${BUCKET}/${DATA_PREFIX}/${split}/"
      uploaded=$((uploaded + 1))
    fi
  done
  [[ ${uploaded} -gt 0 ]] || die "${FRUITS_DIR} holds neither Training/ nor Test/: is it the Fruits-360 folder?"
fi

SAMPLE_DIR=${REPO_ROOT}/data/sample
if [[ -d ${SAMPLE_DIR} ]]; then
  sync_images "${SAMPLE_DIR}" "s3://${BUCKET}/${SAMPLE_PREFIX}/"
  uploaded=$((uploaded + 1))
else
  log "no ${SAMPLE_DIR}: smoke-test sample skipped"
fi
[[ ${uploaded} -gt 0 ]] || die "nothing to upload: give the Fruits-360 folder, see --help"
log "done: input_path s3://${BUCKET}/${DATA_PREFIX} (full) or s3://${BUCKET}/${SAMPLE_PREFIX} (sample)"
