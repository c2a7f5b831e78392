# The installed package: `cmake --install` puts the headers, the static libraries and a package
# config under a prefix, and find_package(attnscope CONFIG REQUIRED) gives
#   attnscope::core       host model: problems, layouts, tensors, generators, metrics, records
#   attnscope::reference  FP64 / binary128 references, error bounds, precision models
#   attnscope::kernels    GPU runtime, attnscope's kernels, the registry of implementations
#   attnscope::accuracy   the accuracy suite: attnscope::accuracy_main(argc, argv)
#   attnscope::bench      the benchmark suite: attnscope::bench_main(argc, argv)
# and attnscope_gpu_sources() for a project's own .hip files (cmake/AttnscopeGpu.cmake).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# attnscope_install_library(<target> <export name> <header folders...>): exports <target> as
# attnscope::<export name> (an alias of that name serves in the build tree too) and installs
# each header folder under include/attnscope/.
function(attnscope_install_library target export_name)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  add_library(attnscope::${export_name} ALIAS ${target})
  install(TARGETS ${target} EXPORT attnscopeTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  foreach(dir ${ARGN})
    install(DIRECTORY ${dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/attnscope)
  endforeach()
endfunction()

# Called once every target exists.
function(attnscope_install_package)
  set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/attnscope)
  install(EXPORT attnscopeTargets NAMESPACE attnscope:: DESTINATION ${config_dir})
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/attnscopeConfig.cmake.in
    ${PROJECT_BINARY_DIR}/attnscopeConfig.cmake INSTALL_DESTINATION ${config_dir})
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/attnscopeConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES
    ${PROJECT_BINARY_DIR}/attnscopeConfig.cmake
    ${PROJECT_BINARY_DIR}/attnscopeConfigVersion.cmake
    ${PROJECT_SOURCE_DIR}/cmake/AttnscopeGpu.cmake
    ${PROJECT_SOURCE_DIR}/cmake/RocmDebian.cmake
    DESTINATION ${config_dir})
endfunction()
