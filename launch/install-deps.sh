#!/usr/bin/env bash
# Installs the Debian packages ringtrain needs to build, test and run, when
# they are missing. Safe to run again. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang clang-format
  openmpi-bin libopenmpi-dev
  libopenblas-dev
  libhdf5-dev hdf5-tools zlib1g-dev
  libcmocka-dev jq libxml2-utils valgrind libclang-rt-14-dev
  python3-h5py python3-numpy
  dataset-fashion-mnist
  slurm-wlm munge iproute2 iputils-ping util-linux
)
if [ "${RINGTRAIN_EXTRA_PACKAGES:-}" ]; then
  # shellcheck disable=SC2206
  packages+=(${RINGTRAIN_EXTRA_PACKAGES})
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
