#!/usr/bin/env bash
# Prints the CMake preset for this machine: ATTNSCOPE_PRESET if set, else cuda where nvcc is
# found, rocm where ROCm's HIP is, none otherwise.
if [[ -n "${ATTNSCOPE_PRESET:-}" ]]; then echo "$ATTNSCOPE_PRESET"
elif command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then echo cuda
elif [[ -d /opt/rocm ]] || [[ -d /usr/lib/x86_64-linux-gnu/cmake/hip-lang ]]; then echo rocm
else echo none
fi
