#!/usr/bin/env bash
# jupyterhub_user.sh: run ON THE PRIMARY NODE of the cluster. Replaces JupyterHub's default login
# (jovyan / jupyter, known to everyone) by a named JupyterHub admin with a generated password.
# EMR's JupyterHub runs in the docker container "jupyterhub" and authenticates with the
# container's Linux accounts (PAM); a user is an admin when the hub's database says so. The script:
#   1. creates <user> in the container (useradd -m -s /bin/bash -N), unless it exists;
#   2. sets a random 24-character password (from /dev/urandom), passed to chpasswd on its
#      standard input, never on a command line;
#   3. makes <user> a JupyterHub admin through the hub's REST API (AWS's "Adding Jupyter Notebook
#      users and administrators"): an API token of jovyan, the hub's default admin, from
#      `jupyterhub token jovyan` in the container; POST /hub/api/users/<user> {"admin": true}
#      (PATCH when the hub already knows <user>); then GET checks that the hub says admin;
#   4. only then locks jovyan's password (passwd -l), so the default login no longer works,
#      and prints the new password once, on this terminal only.
# If step 3 fails, the script stops with a message and jovyan is left as it is (still the admin).
# The token travels to curl on its standard input, never on a command line.
# Run it again to give <user> a new password, and after a restart of the jupyterhub container
# (changes made inside the container may not survive it).
#
# Usage, from your machine (cluster id from create_cluster.sh):
#   aws emr put --cluster-id j-XXXXXXXXXXXXX --key-pair-file ~/<your-key-pair>.pem --src scripts/emr/jupyterhub_user.sh
#   aws emr ssh --cluster-id j-XXXXXXXXXXXXX --key-pair-file ~/<your-key-pair>.pem --command "bash jupyterhub_user.sh <user>"
# Environment: JUPYTERHUB_CONTAINER (default jupyterhub), JUPYTERHUB_API_URL (default
# https://<this host>:9443/hub/api; its certificate is self-signed, so it is not verified),
# JUPYTERHUB_BIN (default /opt/conda/bin/jupyterhub, inside the container).
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
HUB_API=${JUPYTERHUB_API_URL:-https://$(hostname):9443/hub/api}
HUB_BIN=${JUPYTERHUB_BIN:-/opt/conda/bin/jupyterhub}

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

admin_failed() {
  die "could not make ${USER_NAME} a JupyterHub admin: $*. jovyan was NOT locked (it is still the" \
    "hub's admin, password unchanged); fix the cause and run this script again"
}

hub_api() {  # hub_api METHOD PATH [JSON]: prints the HTTP status; the reply body goes to ${REPLY_FILE}
  local data=()
  [[ $# -lt 3 ]] || data=(--header "Content-Type: application/json" --data "$3")
  printf 'header = "Authorization: token %s"\n' "${TOKEN}" |
    curl --silent --show-error --insecure --max-time 30 --config - --request "$1" \
      --output "${REPLY_FILE}" --write-out '%{http_code}' "${data[@]}" "${HUB_API}$2" ||
    true  # curl's --write-out gives 000 when nothing answered
}

log "making ${USER_NAME} a JupyterHub admin (${HUB_API})"
TOKEN=$(hub "${HUB_BIN}" token jovyan | tail -n 1) || TOKEN=""
[[ ${TOKEN} =~ ^[A-Za-z0-9]{16,}$ ]] ||
  admin_failed "no API token from '${HUB_BIN} token jovyan' in the ${CONTAINER} container"
REPLY_FILE=$(mktemp)
trap 'rm -f "${REPLY_FILE}"' EXIT
status=$(hub_api POST "/users/${USER_NAME}" '{"admin": true}')
if [[ ${status} == 409 ]]; then  # the hub knows the user already: make it an admin
  status=$(hub_api PATCH "/users/${USER_NAME}" '{"admin": true}')
fi
[[ ${status} =~ ^20[01]$ ]] ||
  admin_failed "the hub answered HTTP ${status} to ${HUB_API}/users/${USER_NAME}: $(head -c 300 "${REPLY_FILE}")"
status=$(hub_api GET "/users/${USER_NAME}")
if [[ ${status} != 200 ]] || ! grep -Eq '"admin": *true' "${REPLY_FILE}"; then
  admin_failed "the hub does not list ${USER_NAME} as an admin (HTTP ${status})"
fi
log "${USER_NAME} is a JupyterHub admin"

log "locking the default account jovyan"
if hub id -u jovyan >/dev/null 2>&1; then
  hub passwd -l jovyan >/dev/null
fi

log "done. Log in at https://<master-public-dns>:9443 (through the SSH tunnel) as:"
printf 'user: %s\npassword: %s\n' "${USER_NAME}" "${PASSWORD}"
