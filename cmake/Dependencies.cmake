# Every dependency comes through find_package, so distribution packages
# (Debian 12 and Ubuntu 24.04 alike) serve without vendoring.
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)  # headers only: Multiprecision
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 2.1 QUIET CONFIG)
if(NOT CLI11_FOUND)
  # Debian 12's libcli11-dev ships the header without a package config.
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  set_target_properties(CLI11::CLI11 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${CLI11_INCLUDE_DIR})
endif()
if(ATTNSCOPE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(ATTNSCOPE_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
