// Shared basics of the lowbit core: index type, error types and the argument-check macro.
//
// Errors are C++ exceptions that the bindings map to Python:
//   InvalidArgument -> ValueError, TypeMismatch -> TypeError, Unsupported -> NotImplementedError.
// Nothing reachable from Python aborts (no assert()/abort() on user input).
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace lowbit {

using i64 = std::int64_t;

// A value is wrong (shape, range, non-finite data): Python ValueError.
struct InvalidArgument : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// A value has the wrong type or dtype: Python TypeError.
struct TypeMismatch : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// A request this build or this format cannot serve: Python NotImplementedError.
struct Unsupported : std::logic_error {
  using std::logic_error::logic_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Concatenate any streamable values into a message.
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace lowbit

// LOWBIT_CHECK(cond, "W.shape[1]=", k, " must be a multiple of ", g): throws InvalidArgument.
#define LOWBIT_CHECK(cond, ...)                                      \
  do {                                                               \
    if (!(cond)) throw ::lowbit::InvalidArgument(::lowbit::str_cat(__VA_ARGS__)); \
  } while (0)
