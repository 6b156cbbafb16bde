#include "results/metrics/components.h"

#include <cstddef>

namespace zsad::results {

uint32_t label_components(const uint8_t* mask, int64_t h, int64_t w, std::vector<uint32_t>& labels,
                          std::vector<uint32_t>& sizes) {
  const int64_t n = h * w;
  labels.assign(static_cast<size_t>(n), 0);
  sizes.clear();
  std::vector<int64_t> stack;
  uint32_t count = 0;
  for (int64_t start = 0; start < n; ++start) {
    if (!mask[start] || labels[start]) continue;
    const uint32_t id = ++count;
    uint32_t size = 0;
    labels[start] = id;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      ++size;
      const int64_t y = p / w, x = p % w;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        const int64_t yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const int64_t q = yy * w + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = id;
            stack.push_back(q);
          }
        }
      }
    }
    sizes.push_back(size);
  }
  return count;
}

}  // namespace zsad::results
