#pragma once
// 64-bit FNV-1a: a stable, platform-independent string hash (std::hash is neither), used to
// derive seeds and ports from names.
#include <cstdint>
#include <string_view>

namespace zsad {

inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace zsad
