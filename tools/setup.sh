#!/usr/bin/env bash
# Installs what attnscope's build needs on Debian 12 / Ubuntu 24.04 (apt), skipping what is there.
# GPU toolchains are not installed here: CUDA's nvcc comes with the CUDA toolkit
# (/usr/local/cuda); ROCm packages are added with ATTNSCOPE_WITH_ROCM=1.
set -euo pipefail
if [[ "${ATTNSCOPE_SKIP_SETUP:-0}" == 1 ]]; then
  echo "setup: skipped (ATTNSCOPE_SKIP_SETUP=1: packages are managed otherwise on this machine)"
  exit 0
fi

packages=(cmake ninja-build g++ git libboost-dev nlohmann-json3-dev libcli11-dev libgtest-dev
          libbenchmark-dev python3 python3-numpy python3-matplotlib)
if [[ "${ATTNSCOPE_WITH_ROCM:-0}" == 1 ]]; then
  packages+=(hipcc libamdhip64-dev rocm-device-libs clang-15)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all build packages present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup: missing packages (${missing[*]}) and no apt-get to install them" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "setup: installing ${missing[*]}"
# Machines that provide the libraries another way (or cannot reach a mirror) go on: the CMake
# configure step then names whatever is really missing.
if ! { $sudo apt-get update -q &&
       DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; }; then
  echo "setup: apt could not install ${missing[*]}; continuing with what is installed" >&2
fi
