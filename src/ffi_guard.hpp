// What the C interfaces of the C++ parts (src/comm/c10d_shim.cpp, src/metrics/device.cpp,
// src/train/adamw.cpp, src/train/backward.cpp) share:
// C++ exceptions must not cross into Rust, so every exported function runs its body in `guard`,
// which keeps the message of anything thrown for the caller to fetch (per thread).
#pragma once

#include <exception>
#include <string>

namespace shardsweep {

// The message of the last exception a guarded call caught on this thread.
inline thread_local std::string last_error;

// `f()`, or `on_error` with the exception's message in `last_error` if it throws.
template <typename F>
auto guard(F&& f, decltype(f()) on_error) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return on_error;
}

}  // namespace shardsweep
