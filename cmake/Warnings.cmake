# Warnings for host C++ (g++ and clang); GPU sources get theirs in GpuPlatform.cmake.
add_library(attnscope_warnings INTERFACE)
target_compile_options(attnscope_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  $<$<BOOL:${ATTNSCOPE_WERROR}>:-Werror>>)
