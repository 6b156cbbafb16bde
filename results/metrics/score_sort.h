#pragma once
// The one sort behind every pixel metric of a class: 64-bit records whose upper 32 bits are an
// order-preserving encoding of the float score and whose lower 32 bits carry the payload
// (label or ground-truth region id). Sorting is an in-place MSD radix sort on the score bits
// only, so memory stays at the 8 bytes per pixel the records already occupy.
#include <cstddef>
#include <cstdint>

namespace zsad::results {

// Ascending float order <=> ascending key order. -0.0 and +0.0 map to the same key (sklearn and
// numpy treat them as equal); NaN must be rejected by the caller.
inline uint32_t score_key(float score) {
  if (score == 0.0f) score = 0.0f;
  uint32_t bits;
  static_assert(sizeof(bits) == sizeof(score));
  __builtin_memcpy(&bits, &score, sizeof(bits));
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

inline float key_score(uint32_t key) {
  uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  float f;
  __builtin_memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint64_t make_record(float score, uint32_t payload) {
  return (uint64_t(score_key(score)) << 32) | payload;
}

// Sorts records ascending by their upper 32 bits (payload order within equal scores is
// unspecified). Uses up to `threads` threads.
void sort_records(uint64_t* records, size_t n, int threads);

}  // namespace zsad::results
