#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace zsad::data {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images

double bicubic_kernel(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinear_kernel(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, xcount;  // per output index: first input index and number of taps
  std::vector<int32_t> k;         // [out, ksize] fixed-point weights
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size).
Coeffs precompute(int in_size, int out_size, ResampleFilter filter) {
  const double support0 = filter == ResampleFilter::kBicubic ? 2.0 : 1.0;
  double (*kernel)(double) = filter == ResampleFilter::kBicubic ? bicubic_kernel : bilinear_kernel;
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  const double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = support0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.xcount.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = kernel((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.xmin[xx] = xmin;
    c.xcount[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup-table index
  return static_cast<uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
}

}  // namespace

Image resize_pil(const Image& in, int out_w, int out_h, ResampleFilter filter) {
  if (in.empty() || out_w <= 0 || out_h <= 0) throw Error("resize_pil: empty input or non-positive output size");
  if (out_w == in.width && out_h == in.height) return in;  // Pillow returns a copy
  const int C = in.channels;
  const bool need_h = out_w != in.width;
  const bool need_v = out_h != in.height;
  const Coeffs ch = precompute(in.width, out_w, filter);
  const Coeffs cv = precompute(in.height, out_h, filter);

  // Horizontal pass over the rows the vertical pass will read.
  const int ybox_first = cv.xmin[0];
  const int ybox_last = cv.xmin[out_h - 1] + cv.xcount[out_h - 1];
  Image tmp;
  int row_offset = 0;
  if (need_h) {
    const int rows = need_v ? ybox_last - ybox_first : in.height;
    row_offset = need_v ? ybox_first : 0;
    tmp = Image(out_w, rows, C);
    for (int y = 0; y < rows; ++y) {
      const uint8_t* src = in.row(y + row_offset);
      uint8_t* dst = tmp.row(y);
      for (int xx = 0; xx < out_w; ++xx) {
        const int32_t* k = &ch.k[static_cast<size_t>(xx) * ch.ksize];
        const int xmin = ch.xmin[xx], n = ch.xcount[xx];
        for (int c = 0; c < C; ++c) {
          int32_t ss = 1 << (kPrecisionBits - 1);
          const uint8_t* p = src + static_cast<size_t>(xmin) * C + c;
          for (int x = 0; x < n; ++x) ss += static_cast<int32_t>(p[static_cast<size_t>(x) * C]) * k[x];
          dst[static_cast<size_t>(xx) * C + c] = clip8(ss);
        }
      }
    }
    if (!need_v) return tmp;
  }
  const Image& src = need_h ? tmp : in;
  Image out(out_w, out_h, C);
  const size_t stride = static_cast<size_t>(src.width) * C;
  std::vector<int32_t> acc(stride);
  for (int yy = 0; yy < out_h; ++yy) {
    const int32_t* k = &cv.k[static_cast<size_t>(yy) * cv.ksize];
    const int ymin = cv.xmin[yy] - row_offset, n = cv.xcount[yy];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < n; ++y) {
      const uint8_t* p = src.row(ymin + y);
      const int32_t kv = k[y];
      for (size_t i = 0; i < stride; ++i) acc[i] += static_cast<int32_t>(p[i]) * kv;
    }
    uint8_t* dst = out.row(yy);
    for (size_t i = 0; i < stride; ++i) dst[i] = clip8(acc[i]);
  }
  return out;
}

void normalize_clip(const Image& rgb, float* out) {
  if (rgb.channels != 3) throw Error("normalize_clip: expected an RGB image");
  const size_t plane = static_cast<size_t>(rgb.width) * rgb.height;
  for (int c = 0; c < 3; ++c) {
    const float mean = kClipMean[c], sd = kClipStd[c];
    float* o = out + c * plane;
    const uint8_t* p = rgb.pixels.data() + c;
    for (size_t i = 0; i < plane; ++i) o[i] = (static_cast<float>(p[i * 3]) / 255.0f - mean) / sd;
  }
}

void preprocess_image(const Image& rgb, int size, float* out) {
  normalize_clip(resize_pil(rgb, size, size, ResampleFilter::kBicubic), out);
}

void preprocess_mask(const Image& mask, int size, uint8_t* out) {
  if (mask.channels != 1) throw Error("preprocess_mask: expected a 1-channel mask");
  const Image r = resize_pil(mask, size, size, ResampleFilter::kBilinear);
  // v/255 > 0.5 in float32, as ToTensor then the > 0.5 comparison.
  for (size_t i = 0; i < r.pixels.size(); ++i) out[i] = static_cast<float>(r.pixels[i]) / 255.0f > 0.5f ? 1 : 0;
}

}  // namespace zsad::data
