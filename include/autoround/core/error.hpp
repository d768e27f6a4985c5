#pragma once
// One exception type for every bad input: the message names the file, tensor or parameter.
#include <stdexcept>
#include <string>

namespace autoround {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void require(bool ok, const std::string& what) {
  if (!ok) throw Error(what);
}
}  // namespace detail

}  // namespace autoround
