# GPU platform selection. One HIP source tree builds for:
#   rocm - CMake's HIP language (hip-clang) for AMD GPUs,
#   cuda - the same .hip files compiled as CUDA by nvcc, through kernels/platform,
#   none - host code only; GPU tests and benchmarks report that no GPU backend was built.
# The language itself is enabled by AttnscopeGpu.cmake, which the installed package shares.
set(ATTNSCOPE_GPU "auto" CACHE STRING "GPU platform: auto, rocm, cuda or none")
set_property(CACHE ATTNSCOPE_GPU PROPERTY STRINGS auto rocm cuda none)

set(_platform ${ATTNSCOPE_GPU})
if(_platform STREQUAL "auto")
  set(_platform none)
  find_program(_hipcc_found NAMES hipcc PATHS /opt/rocm/bin)
  find_program(_nvcc_found NAMES nvcc PATHS /usr/local/cuda/bin)
  # HIP's CMake package: /opt/rocm, or the distribution's under /usr (multiarch folder).
  file(GLOB _hip_lang_dirs LIST_DIRECTORIES true
    /opt/rocm/lib/cmake/hip-lang /usr/lib/cmake/hip-lang /usr/lib/*/cmake/hip-lang)
  if(_hipcc_found AND (EXISTS /opt/rocm OR _hip_lang_dirs))
    set(_platform rocm)
  elseif(_nvcc_found)
    set(_platform cuda)
  endif()
endif()
if(NOT _platform MATCHES "^(rocm|cuda|none)$")
  message(FATAL_ERROR "ATTNSCOPE_GPU must be auto, rocm, cuda or none (got '${ATTNSCOPE_GPU}')")
endif()
set(ATTNSCOPE_GPU_PLATFORM ${_platform})

include(AttnscopeGpu)
attnscope_enable_gpu_language()
if(ATTNSCOPE_GPU_PLATFORM STREQUAL "cuda")
  set(ATTNSCOPE_CUDA_ARCHITECTURES ${CMAKE_CUDA_ARCHITECTURES})
elseif(ATTNSCOPE_GPU_PLATFORM STREQUAL "rocm")
  set(ATTNSCOPE_HIP_ARCHITECTURES ${CMAKE_HIP_ARCHITECTURES})
endif()
