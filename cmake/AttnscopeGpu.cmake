# The GPU language of a platform, for attnscope's build and for projects that use the installed
# package (attnscopeConfig.cmake includes this file with the platform attnscope was built for):
#   attnscope_enable_gpu_language()  enables CUDA (nvcc compiles .hip files as CUDA) or HIP
#                                    for ATTNSCOPE_GPU_PLATFORM (cuda, rocm); nothing for none.
#                                    Call it at directory scope, before adding GPU sources.
#   attnscope_gpu_sources(<target> <files...>)  compiles .hip files for that platform, with the
#                                    flags attnscope's own kernels use.
set(_attnscope_gpu_cmake_dir ${CMAKE_CURRENT_LIST_DIR})
include_guard(GLOBAL)

macro(attnscope_enable_gpu_language)
  if(ATTNSCOPE_GPU_PLATFORM STREQUAL "cuda")
    if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
    endif()
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND "$ENV{CUDAARCHS}" STREQUAL "")
      if(ATTNSCOPE_CUDA_ARCHITECTURES)
        set(CMAKE_CUDA_ARCHITECTURES ${ATTNSCOPE_CUDA_ARCHITECTURES})
      else()
        set(CMAKE_CUDA_ARCHITECTURES 90)
      endif()
    endif()
    enable_language(CUDA)
    if(NOT DEFINED CMAKE_CUDA_STANDARD)
      set(CMAKE_CUDA_STANDARD 17)
      set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    endif()
    if(CMAKE_VERSION VERSION_LESS 3.25.2)
      # FindCUDAToolkit of CMake 3.25.0 and 3.25.1 (Debian 12's) stops with "could not find
      # TARGET CUDA::nvToolsExt" when that library is absent, as in CUDA 13, in projects
      # requiring CMake >= 3.25. The requirement is read there only for a deprecation notice:
      # lower it for the call.
      set(_attnscope_min_required ${CMAKE_MINIMUM_REQUIRED_VERSION})
      set(CMAKE_MINIMUM_REQUIRED_VERSION 3.24)
      find_package(CUDAToolkit REQUIRED)
      set(CMAKE_MINIMUM_REQUIRED_VERSION ${_attnscope_min_required})
    else()
      find_package(CUDAToolkit REQUIRED)
    endif()
    set(ATTNSCOPE_GPU_LANGUAGE CUDA)
  elseif(ATTNSCOPE_GPU_PLATFORM STREQUAL "rocm")
    include(${_attnscope_gpu_cmake_dir}/RocmDebian.cmake)
    if(NOT DEFINED CMAKE_HIP_ARCHITECTURES)
      if(ATTNSCOPE_HIP_ARCHITECTURES)
        set(CMAKE_HIP_ARCHITECTURES ${ATTNSCOPE_HIP_ARCHITECTURES})
      else()
        set(CMAKE_HIP_ARCHITECTURES gfx90a gfx940 gfx1030)
      endif()
    endif()
    enable_language(HIP)
    if(NOT DEFINED CMAKE_HIP_STANDARD)
      set(CMAKE_HIP_STANDARD 17)
      set(CMAKE_HIP_STANDARD_REQUIRED ON)
    endif()
    set(ATTNSCOPE_GPU_LANGUAGE HIP)
  endif()
endmacro()

function(attnscope_gpu_sources target)
  if(NOT ATTNSCOPE_GPU_LANGUAGE)
    message(FATAL_ERROR "attnscope_gpu_sources: no GPU language enabled (platform "
                        "'${ATTNSCOPE_GPU_PLATFORM}'; call attnscope_enable_gpu_language() first)")
  endif()
  target_sources(${target} PRIVATE ${ARGN})
  set_source_files_properties(${ARGN} TARGET_DIRECTORY ${target}
    PROPERTIES LANGUAGE ${ATTNSCOPE_GPU_LANGUAGE})
  if(ATTNSCOPE_GPU_PLATFORM STREQUAL "cuda")
    target_compile_definitions(${target} PUBLIC ATTNSCOPE_PLATFORM_CUDA=1)
    # constexpr core helpers (KV addressing) are called from device code.
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra
      $<$<BOOL:${ATTNSCOPE_WERROR}>:--Werror=all-warnings>>)
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
