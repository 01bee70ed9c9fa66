#!/usr/bin/env bash
# jupyterhub_user.sh: run ON THE PRIMARY NODE of the cluster. Replaces JupyterHub's default login
# (jovyan / jupyter, known to everyone) by a named user with a generated password.
# EMR's JupyterHub runs in the docker container "jupyterhub" and authenticates with the
# container's Linux accounts (PAM), so the script:
#   1. creates <user> in the container (useradd -m -s /bin/bash -N), unless it exists;
#   2. sets a random 24-character password (from /dev/urandom), passed to chpasswd on its
#      standard input, never on a command line, and prints it once, on this terminal only;
#   3. locks jovyan's password (passwd -l), so the default login no longer works.
# Run it again to give <user> a new password.
#
# Usage, from your machine (cluster id from create_cluster.sh):
#   aws emr put --cluster-id j-XXXXXXXXXXXXX --key-pair-file ~/<your-key-pair>.pem --src scripts/emr/jupyterhub_user.sh
#   aws emr ssh --cluster-id j-XXXXXXXXXXXXX --key-pair-file ~/<your-key-pair>.pem --command "bash jupyterhub_user.sh <user>"
# Environment: JUPYTERHUB_CONTAINER (default jupyterhub).
set -Eeuo pipefail

log() {
  printf '%s [jupyterhub_user.sh] %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$*" >&2
}
die() {
  log "ERROR: $*"
  exit 1
}
trap 'log "FAILED: exit status $? at line ${LINENO}: ${BASH_COMMAND}"; exit 1' ERR

if [[ ${1:-} == "-h" || ${1:-} == "--help" ]]; then
  awk 'NR > 1 { if ($0 !~ /^#/) exit; sub(/^# ?/, ""); print }' "$0"
  exit 0
fi
[[ $# -eq 1 ]] || die "usage: jupyterhub_user.sh <user> (see --help)"
USER_NAME=$1
[[ ${USER_NAME} =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "'${USER_NAME}' is not a valid Linux user name"
[[ ${USER_NAME} != jovyan ]] || die "choose a user other than jovyan"
CONTAINER=${JUPYTERHUB_CONTAINER:-jupyterhub}

hub() {  # hub CMD...: run a command inside the JupyterHub container
  sudo docker exec "${CONTAINER}" "$@"
}

if hub id -u "${USER_NAME}" >/dev/null 2>&1; then
  log "user ${USER_NAME} already exists in ${CONTAINER}: new password"
else
  log "creating user ${USER_NAME} in ${CONTAINER}"
  hub useradd -m -s /bin/bash -N "${USER_NAME}"
fi

RANDOM_CHARS=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
PASSWORD=${RANDOM_CHARS:0:24}
[[ ${#PASSWORD} -eq 24 ]] || die "could not generate a password"
printf '%s:%s\n' "${USER_NAME}" "${PASSWORD}" | sudo docker exec -i "${CONTAINER}" chpasswd

log "locking the default account jovyan"
if hub id -u jovyan >/dev/null 2>&1; then
  hub passwd -l jovyan >/dev/null
fi

log "done. Log in at https://<master-public-dns>:9443 (through the SSH tunnel) as:"
printf 'user: %s\npassword: %s\n' "${USER_NAME}" "${PASSWORD}"
