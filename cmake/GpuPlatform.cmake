# GPU platform selection. One HIP source tree builds for:
#   rocm - CMake's HIP language (hip-clang) for AMD GPUs,
#   cuda - the same .hip files compiled as CUDA by nvcc, through kernels/platform,
#   none - host code only; GPU tests and benchmarks report that no GPU backend was built.
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

if(_platform STREQUAL "cuda")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND "$ENV{CUDAARCHS}" STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  if(CMAKE_VERSION VERSION_LESS 3.25.2)
    # FindCUDAToolkit of CMake 3.25.0 and 3.25.1 (Debian 12's) stops with "could not find TARGET
    # CUDA::nvToolsExt" when that library is absent, as in CUDA 13, in projects requiring
    # CMake >= 3.25. The requirement is read there only for a deprecation notice: lower it for
    # the call.
    set(_min_required ${CMAKE_MINIMUM_REQUIRED_VERSION})
    set(CMAKE_MINIMUM_REQUIRED_VERSION 3.24)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_MINIMUM_REQUIRED_VERSION ${_min_required})
  else()
    find_package(CUDAToolkit REQUIRED)
  endif()
  set(ATTNSCOPE_GPU_LANGUAGE CUDA)
elseif(_platform STREQUAL "rocm")
  include(RocmDebian)
  if(NOT DEFINED CMAKE_HIP_ARCHITECTURES)
    set(CMAKE_HIP_ARCHITECTURES gfx90a gfx940 gfx1030)
  endif()
  enable_language(HIP)
  set(CMAKE_HIP_STANDARD 17)
  set(CMAKE_HIP_STANDARD_REQUIRED ON)
  set(ATTNSCOPE_GPU_LANGUAGE HIP)
endif()

# attnscope_gpu_sources(<target> <files...>): compile .hip files for the chosen platform.
function(attnscope_gpu_sources target)
  target_sources(${target} PRIVATE ${ARGN})
  set_source_files_properties(${ARGN} TARGET_DIRECTORY ${target}
    PROPERTIES LANGUAGE ${ATTNSCOPE_GPU_LANGUAGE})
  if(ATTNSCOPE_GPU_PLATFORM STREQUAL "cuda")
    target_compile_definitions(${target} PUBLIC ATTNSCOPE_PLATFORM_CUDA=1)
    # constexpr core helpers (KV addressing) are called from device code.
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra --Werror=all-warnings>)
    # One CUDA runtime, the one CMAKE_CUDA_RUNTIME_LIBRARY names (static unless told otherwise):
    # nvcc links it into every CUDA target already, so the host-side callers get the same one.
    string(TOLOWER "${CMAKE_CUDA_RUNTIME_LIBRARY}" _cudart_kind)
    if(_cudart_kind STREQUAL "shared")
      target_link_libraries(${target} PUBLIC CUDA::cudart)
    else()
      target_link_libraries(${target} PUBLIC CUDA::cudart_static)
    endif()
  else()
    target_compile_definitions(${target} PUBLIC ATTNSCOPE_PLATFORM_ROCM=1)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:HIP>:-Wall -Wextra $<$<BOOL:${ATTNSCOPE_WERROR}>:-Werror>>)
    # hip-lang::host comes with the HIP language: the runtime library for host-side callers.
    # Their executables link through the HIP compiler (HIP propagates as linker language), which
    # must be told it is linking HIP or it warns that --offload-arch went unused.
    target_link_libraries(${target} PUBLIC hip-lang::host)
    target_link_options(${target} INTERFACE $<$<LINK_LANGUAGE:HIP>:--hip-link>)
  endif()
endfunction()
