#include "trainer/eval/panels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>

namespace zsad::eval {

void jet(double t, uint8_t rgb[3]) {
  t = std::min(1.0, std::max(0.0, std::isfinite(t) ? t : 0.0));
  auto ch = [](double x) { return static_cast<uint8_t>(std::lround(255.0 * std::min(1.0, std::max(0.0, x)))); };
  rgb[0] = ch(1.5 - std::fabs(4.0 * t - 3.0));
  rgb[1] = ch(1.5 - std::fabs(4.0 * t - 2.0));
  rgb[2] = ch(1.5 - std::fabs(4.0 * t - 1.0));
}

namespace {
// 3x5 glyphs, rows top to bottom, 3 bits each (MSB = left).
const std::map<char, std::array<uint8_t, 5>>& font() {
  static const std::map<char, std::array<uint8_t, 5>> f = {
      {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
      {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
      {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
      {'+', {0, 2, 7, 2, 0}}, {'e', {7, 5, 7, 4, 7}}, {' ', {0, 0, 0, 0, 0}},
  };
  return f;
}

std::string short_number(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) < 1e-2 || std::fabs(v) >= 1e4)) {
    std::snprintf(buf, sizeof buf, "%.1e", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", v);
  }
  return buf;
}
}  // namespace

void draw_text(data::Image& img, int x, int y, const std::string& text, int scale, const uint8_t rgb[3]) {
  for (char c : text) {
    auto it = font().find(c);
    if (it != font().end()) {
      for (int r = 0; r < 5; ++r) {
        for (int col = 0; col < 3; ++col) {
          if (!((it->second[r] >> (2 - col)) & 1)) continue;
          for (int dy = 0; dy < scale; ++dy) {
            for (int dx = 0; dx < scale; ++dx) {
              const int px = x + col * scale + dx, py = y + r * scale + dy;
              if (px < 0 || py < 0 || px >= img.width || py >= img.height) continue;
              for (int k = 0; k < 3 && k < img.channels; ++k) img.at(px, py, k) = rgb[k];
            }
          }
        }
      }
    }
    x += 4 * scale;
  }
}

data::Image make_panel(const data::Image& rgb, const uint8_t* mask, const float* map, int size, double lo, double hi) {
  const int gap = 4, bar_w = std::max(8, size / 20);
  const int scale = std::max(1, size / 128);
  const int label_w = 8 * 4 * scale;
  const int W = 3 * size + 3 * gap + bar_w + gap + label_w;
  const int H = size + 2 * 5 * scale + 2 * gap;
  const int top = 5 * scale + gap;
  data::Image out(W, H, 3, 255);
  if (lo == hi) {
    lo = map[0];
    hi = map[0];
    for (int i = 1; i < size * size; ++i) {
      lo = std::min(lo, static_cast<double>(map[i]));
      hi = std::max(hi, static_cast<double>(map[i]));
    }
  }
  const double span = hi > lo ? hi - lo : 1.0;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const size_t i = static_cast<size_t>(y) * size + x;
      uint8_t c[3];
      jet((map[i] - lo) / span, c);
      for (int k = 0; k < 3; ++k) {
        const uint8_t v = rgb.at(x, y, k);
        out.at(x, top + y, k) = v;
        const uint8_t m = mask ? (mask[i] ? 255 : 0) : static_cast<uint8_t>(v / 3);  // no GT: dimmed image
        out.at(size + gap + x, top + y, k) = m;
        out.at(2 * (size + gap) + x, top + y, k) = static_cast<uint8_t>(std::lround(0.5 * v + 0.5 * c[k]));
      }
    }
  }
  // Colour bar, high values at the top.
  const int bx = 3 * (size + gap);
  for (int y = 0; y < size; ++y) {
    uint8_t c[3];
    jet(1.0 - static_cast<double>(y) / std::max(1, size - 1), c);
    for (int x = 0; x < bar_w; ++x) {
      for (int k = 0; k < 3; ++k) out.at(bx + x, top + y, k) = c[k];
    }
  }
  const uint8_t black[3] = {0, 0, 0};
  draw_text(out, bx + bar_w + gap, top, short_number(hi), scale, black);
  draw_text(out, bx + bar_w + gap, top + size - 5 * scale, short_number(lo), scale, black);
  return out;
}

}  // namespace zsad::eval
