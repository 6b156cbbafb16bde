#include "data/noise.h"

#include <cmath>

namespace zsad::data {

namespace {
inline double fade(double t) { return t * t * t * (t * (t * 6 - 15) + 10); }
}  // namespace

std::vector<float> perlin_2d(int height, int width, double res_y, double res_x, Rng& rng) {
  const int gy = static_cast<int>(std::ceil(res_y)) + 1;
  const int gx = static_cast<int>(std::ceil(res_x)) + 1;
  std::vector<double> gcos(static_cast<size_t>(gy) * gx), gsin(gcos.size());
  for (size_t i = 0; i < gcos.size(); ++i) {
    const double a = 6.283185307179586 * rng.uniform();
    gcos[i] = std::cos(a);
    gsin[i] = std::sin(a);
  }
  std::vector<float> out(static_cast<size_t>(height) * width);
  for (int y = 0; y < height; ++y) {
    const double fy = (y + 0.5) * res_y / height;
    int iy = static_cast<int>(fy);
    if (iy >= gy - 1) iy = gy - 2;
    const double ty = fy - iy;
    const double uy = fade(ty);
    for (int x = 0; x < width; ++x) {
      const double fx = (x + 0.5) * res_x / width;
      int ix = static_cast<int>(fx);
      if (ix >= gx - 1) ix = gx - 2;
      const double tx = fx - ix;
      const size_t i00 = static_cast<size_t>(iy) * gx + ix, i01 = i00 + 1, i10 = i00 + gx, i11 = i10 + 1;
      const double n00 = gcos[i00] * tx + gsin[i00] * ty;
      const double n01 = gcos[i01] * (tx - 1) + gsin[i01] * ty;
      const double n10 = gcos[i10] * tx + gsin[i10] * (ty - 1);
      const double n11 = gcos[i11] * (tx - 1) + gsin[i11] * (ty - 1);
      const double ux = fade(tx);
      const double a = n00 + ux * (n01 - n00);
      const double b = n10 + ux * (n11 - n10);
      out[static_cast<size_t>(y) * width + x] = static_cast<float>(std::sqrt(2.0) * (a + uy * (b - a)));
    }
  }
  return out;
}

std::vector<float> fbm_2d(int height, int width, double res, int octaves, Rng& rng) {
  std::vector<float> acc(static_cast<size_t>(height) * width, 0.0f);
  double amp = 1.0, r = res;
  for (int o = 0; o < octaves; ++o) {
    const std::vector<float> n = perlin_2d(height, width, r, r, rng);
    for (size_t i = 0; i < acc.size(); ++i) acc[i] += static_cast<float>(amp * n[i]);
    amp *= 0.5;
    r *= 2.0;
  }
  return acc;
}

}  // namespace zsad::data
