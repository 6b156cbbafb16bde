#pragma once
// SHA-256 (FIPS 180-4) for content digests: results files record the digests of the resolved
// config, the weights and the dataset index; the feature cache keys its files by them.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace zsad {

class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(const std::string& s) { return update(s.data(), s.size()); }
  // Finishes the digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> digest();
  std::string hex_digest();  // 64 lowercase hex characters

 private:
  void compress(const uint8_t* block);
  uint32_t h_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

std::string sha256_hex(const void* data, size_t size);
std::string sha256_hex(const std::string& s);
// Streams the file in blocks; throws zsad::Error naming the path when it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace zsad
