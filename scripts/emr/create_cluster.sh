#!/usr/bin/env bash
# create_cluster.sh: start the project's EMR cluster with `aws emr create-cluster`. The request is
# built by cluster.py (the one cluster definition, also used by the nightly run, nightly.sh) from
# the JSON files beside this script, their {{...}} placeholders filled from the variables below:
#   instance-groups.json    1 primary + CORE_COUNT core nodes of INSTANCE_TYPE (default 1 + 2 m6i.xlarge)
#   configurations.json     jupyter-s3-conf (notebooks persist to s3://BUCKET/jupyter/), spark-env
#                           and spark-defaults so that PySpark runs /opt/fruits/venv/bin/python
#   bootstrap-actions.json  s3://BUCKET/artifacts/bootstrap-emr.sh <helpers wheel> <requirements>
# Release emr-7.5.0 (Spark 3.5, Amazon Linux 2023) with Hadoop, Spark, Livy and JupyterHub; logs
# to s3://BUCKET/logs/; the cluster terminates itself after IDLE_TIMEOUT seconds without work.
# No security-group rule opens anything to the world: with MY_IP set, port 22 of the primary
# node is opened to MY_IP/32 only (security group fruits-emr-ssh, for the SSH tunnel); JupyterHub
# (9443), Livy (8998) and the other web UIs are reached through that tunnel, never directly.
# Run upload_artifacts.sh and create_instance_profile.sh first. Prints the cluster id.
#
# Usage: BUCKET=<your-bucket> KEY_NAME=<your-key-pair> [MY_IP=<your-public-ipv4>] scripts/emr/create_cluster.sh
# Environment:
#   BUCKET            the project bucket (required)
#   KEY_NAME          name of your EC2 key pair in REGION, for SSH (required)
#   MY_IP             your public IPv4 address; port 22 is opened to it alone (optional: without
#                     it, add your own rule or use a bastion)
#   REGION            default eu-west-3
#   RELEASE_LABEL     default emr-7.5.0
#   INSTANCE_TYPE     default m6i.xlarge         CORE_COUNT    default 2
#   INSTANCE_PROFILE  default fruits-emr-ec2     SERVICE_ROLE  default EMR_DefaultRole
#   SUBNET_ID         optional subnet (default: EMR picks one in the default VPC)
#   CLUSTER_NAME      default fruits-featurization
#   IDLE_TIMEOUT      seconds of idleness before auto-termination, default 3600
#   EBS_ROOT_GB       root volume size of each node, default 32 (the venv is ~2 GB)
#   OWNER             tag, default $USER      DATA_CLASSIFICATION  tag, default internal
#   EXTRA_TAGS        more tags, space-separated key=value
#   PYTHON            the Python that runs cluster.py (the request builder), default python3
#   DRY_RUN=1         print the aws commands instead of running them
#   RENDER_DIR        where the filled JSON files go (default: a temporary folder, kept with DRY_RUN)
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

if help_requested "$@"; then usage; exit 0; fi
[[ $# -eq 0 ]] || die "no arguments expected (use the variables), see --help"
require_bucket
[[ -n ${KEY_NAME:-} ]] || die "set KEY_NAME to your EC2 key pair name in ${REGION}, e.g. KEY_NAME=<your-key-pair>"
[[ ${KEY_NAME} =~ ^[A-Za-z0-9._-]+$ ]] || die "KEY_NAME='${KEY_NAME}' has unexpected characters"
RELEASE_LABEL=${RELEASE_LABEL:-emr-7.5.0}
[[ ${RELEASE_LABEL} =~ ^emr-7\.[0-9]+\.[0-9]+$ ]] || die "RELEASE_LABEL must be an emr-7.x.y release, got '${RELEASE_LABEL}'"
INSTANCE_TYPE=${INSTANCE_TYPE:-m6i.xlarge}  # scripts/emr/instances.py: most images per dollar
CORE_COUNT=${CORE_COUNT:-2}
[[ ${CORE_COUNT} =~ ^[1-9][0-9]*$ ]] || die "CORE_COUNT must be a positive number, got '${CORE_COUNT}'"
INSTANCE_PROFILE=${INSTANCE_PROFILE:-fruits-emr-ec2}
SERVICE_ROLE=${SERVICE_ROLE:-EMR_DefaultRole}
CLUSTER_NAME=${CLUSTER_NAME:-fruits-featurization}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-3600}
[[ ${IDLE_TIMEOUT} =~ ^[0-9]+$ ]] || die "IDLE_TIMEOUT must be a number of seconds, got '${IDLE_TIMEOUT}'"
EBS_ROOT_GB=${EBS_ROOT_GB:-32}
OWNER=${OWNER:-${USER:-unknown}}
DATA_CLASSIFICATION=${DATA_CLASSIFICATION:-internal}
MY_IP=${MY_IP:-}
SUBNET_ID=${SUBNET_ID:-}
EXTRA_TAGS=${EXTRA_TAGS:-}
PYTHON=${PYTHON:-python3}

if [[ -n ${RENDER_DIR:-} ]]; then
  mkdir -p "${RENDER_DIR}"
elif [[ ${DRY_RUN} == 1 ]]; then
  RENDER_DIR=$(mktemp -d)
else
  RENDER_DIR=$(mktemp -d)
  trap 'rm -rf "${RENDER_DIR}"' EXIT
fi
if [[ -n ${SUBNET_ID} ]]; then
  [[ ${SUBNET_ID} =~ ^subnet-[0-9a-f]+$ ]] || die "SUBNET_ID='${SUBNET_ID}' is not a subnet id"
fi
ADDITIONAL_MASTER_SG=""

# --- SSH from one address only ------------------------------------------------------------
if [[ -n ${MY_IP} ]]; then
  [[ ${MY_IP} =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "MY_IP must be one IPv4 address (no mask), got '${MY_IP}'"
  [[ ${MY_IP} != "0.0.0.0" ]] || die "MY_IP must be your own address, not the whole Internet"
  if [[ -n ${SUBNET_ID} ]]; then
    VPC_ID=$(capture '<vpc-id>' aws ec2 describe-subnets --region "${REGION}" --subnet-ids "${SUBNET_ID}" \
      --query 'Subnets[0].VpcId' --output text)
  else
    VPC_ID=$(capture '<vpc-id>' aws ec2 describe-vpcs --region "${REGION}" \
      --filters Name=isDefault,Values=true --query 'Vpcs[0].VpcId' --output text)
  fi
  [[ -n ${VPC_ID} && ${VPC_ID} != None ]] || die "no default VPC in ${REGION}: set SUBNET_ID"
  SG_ID=$(capture '<sg-id>' aws ec2 describe-security-groups --region "${REGION}" \
    --filters Name=group-name,Values=fruits-emr-ssh "Name=vpc-id,Values=${VPC_ID}" \
    --query 'SecurityGroups[0].GroupId' --output text)
  if [[ -z ${SG_ID} || ${SG_ID} == None ]]; then
    SG_ID=$(capture '<sg-id>' aws ec2 create-security-group --region "${REGION}" \
      --group-name fruits-emr-ssh --description "SSH tunnel to the fruits EMR primary node, one address" \
      --vpc-id "${VPC_ID}" --query GroupId --output text)
  fi
  log "security group ${SG_ID}: port 22 from ${MY_IP}/32 only"
  if ! out=$(run aws ec2 authorize-security-group-ingress --region "${REGION}" --group-id "${SG_ID}" \
    --ip-permissions "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=${MY_IP}/32,Description=fruits-ssh-tunnel}]" 2>&1); then
    [[ ${out} == *InvalidPermission.Duplicate* ]] || die "could not open port 22 to ${MY_IP}/32: ${out}"
    log "the rule was already there"
  fi
  ADDITIONAL_MASTER_SG=${SG_ID}
else
  log "MY_IP not set: no SSH rule added (the tunnel needs port 22 open to your address)"
fi

# --- the cluster ----------------------------------------------------------------------------
# The request comes from cluster.py, which also gives the nightly state machine its createCluster
# parameters (one definition for both).
export BUCKET KEY_NAME RELEASE_LABEL INSTANCE_TYPE CORE_COUNT INSTANCE_PROFILE SERVICE_ROLE \
  CLUSTER_NAME IDLE_TIMEOUT EBS_ROOT_GB OWNER DATA_CLASSIFICATION SUBNET_ID ADDITIONAL_MASTER_SG EXTRA_TAGS
CLUSTER_ARGS_TEXT=$("${PYTHON}" "${EMR_DIR}/cluster.py" create-cluster-args --render-dir "${RENDER_DIR}")
mapfile -t CLUSTER_ARGS <<<"${CLUSTER_ARGS_TEXT}"
log "filled JSON files in ${RENDER_DIR}"
log "creating cluster ${CLUSTER_NAME} (${RELEASE_LABEL}, 1 + ${CORE_COUNT} x ${INSTANCE_TYPE}) in ${REGION}"
CLUSTER_ID=$(capture 'j-DRYRUN' aws emr create-cluster --region "${REGION}" "${CLUSTER_ARGS[@]}" \
  --query ClusterId --output text)
log "cluster ${CLUSTER_ID} starting; next:"
log "  aws emr wait cluster-running --region ${REGION} --cluster-id ${CLUSTER_ID}"
log "  aws emr socks --region ${REGION} --cluster-id ${CLUSTER_ID} --key-pair-file ~/<your-key-pair>.pem"
printf '%s\n' "${CLUSTER_ID}"
