// Every GPU runtime call goes through ATTNSCOPE_CHECK: a failure throws GpuError naming the call,
// the file and the line. For GPU sources (.hip) only: it needs the HIP spelling of the platform.
#pragma once

#include <string>

#include "attnscope/kernels/runtime.hpp"
#include "attnscope/platform/hip_platform.hpp"

namespace attnscope::gpu::detail {
[[noreturn]] void throw_error(hipError_t e, const char* call, const char* file, int line);
}

#define ATTNSCOPE_CHECK(call)                                                               \
  do {                                                                                      \
    const hipError_t attnscope_check_e_ = (call);                                           \
    if (attnscope_check_e_ != hipSuccess)                                                   \
      ::attnscope::gpu::detail::throw_error(attnscope_check_e_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here.
#define ATTNSCOPE_CHECK_LAUNCH() ATTNSCOPE_CHECK(hipGetLastError())
