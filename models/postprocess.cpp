#include "models/postprocess.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "common/error.h"

namespace zsad::models {

UpsampleOptions parse_upsample(const std::string& name) {
  UpsampleOptions o;
  if (name == "bilinear") return o;
  if (name == "bilinear_align_corners") {
    o.align_corners = true;
    return o;
  }
  if (name == "nearest") {
    o.kind = UpsampleKind::kNearest;
    return o;
  }
  throw Error("upsampling '" + name + "': expected bilinear, bilinear_align_corners or nearest");
}

std::string upsample_name(const UpsampleOptions& o) {
  if (o.kind == UpsampleKind::kNearest) return "nearest";
  return o.align_corners ? "bilinear_align_corners" : "bilinear";
}

at::Tensor upsample_maps(const at::Tensor& maps, int64_t size, const UpsampleOptions& o) {
  if (maps.dim() != 2 && maps.dim() != 3) {
    throw Error("upsample_maps: expected maps [B,h,w] or [h,w], got " + std::to_string(maps.dim()) + " dims");
  }
  if (size <= 0) throw Error("upsample_maps: size must be positive, got " + std::to_string(size));
  const bool single = maps.dim() == 2;
  at::Tensor x = (single ? maps.unsqueeze(0) : maps).to(at::kFloat).unsqueeze(1).contiguous();  // [B,1,h,w]
  at::Tensor y;
  if (x.size(2) == size && x.size(3) == size) {
    y = x.clone();
  } else if (o.kind == UpsampleKind::kNearest) {
    y = at::upsample_nearest2d(x, {size, size});
  } else {
    y = at::upsample_bilinear2d(x, {size, size}, o.align_corners);
  }
  y = y.squeeze(1);
  return single ? y.squeeze(0) : y;
}

std::vector<double> gaussian_kernel(double sigma, double truncate) {
  const auto radius = static_cast<int64_t>(truncate * sigma + 0.5);
  std::vector<double> k(static_cast<size_t>(2 * radius + 1));
  const double s2 = sigma * sigma;
  double sum = 0;
  for (int64_t x = -radius; x <= radius; ++x) {
    k[static_cast<size_t>(x + radius)] = std::exp(-0.5 / s2 * static_cast<double>(x * x));
    sum += k[static_cast<size_t>(x + radius)];
  }
  for (double& v : k) v /= sum;
  return k;
}

namespace {

// scipy 'reflect' (half-sample symmetric) index for any integer position, period 2n.
inline int64_t reflect_index(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * n;
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

// One 1-D correlation pass over `count` lines of length n, elements `stride` apart, lines
// `line_step` apart, from src into dst (float64), then optional float32 rounding.
void pass(const double* src, double* dst, int64_t n, int64_t stride, int64_t count, int64_t line_step,
          const std::vector<double>& k, bool round_f32, std::vector<double>& line) {
  const int64_t r = static_cast<int64_t>(k.size() / 2);
  line.resize(static_cast<size_t>(n + 2 * r));
  for (int64_t c = 0; c < count; ++c) {
    const double* s = src + c * line_step;
    for (int64_t i = -r; i < n + r; ++i) line[static_cast<size_t>(i + r)] = s[reflect_index(i, n) * stride];
    double* d = dst + c * line_step;
    for (int64_t i = 0; i < n; ++i) {
      double acc = 0;
      const double* l = line.data() + i;
      for (size_t t = 0; t < k.size(); ++t) acc += l[t] * k[t];
      d[i * stride] = round_f32 ? static_cast<double>(static_cast<float>(acc)) : acc;
    }
  }
}

}  // namespace

at::Tensor gaussian_smooth(const at::Tensor& maps, double sigma, double truncate) {
  if (maps.dim() < 2) throw Error("gaussian_smooth: expected maps [..., H, W]");
  if (maps.scalar_type() != at::kFloat && maps.scalar_type() != at::kDouble) {
    throw Error("gaussian_smooth: expected float32 or float64 maps");
  }
  if (sigma <= 0) return maps.clone();
  const bool f32 = maps.scalar_type() == at::kFloat;
  const int64_t H = maps.size(-2), W = maps.size(-1);
  at::Tensor in = maps.to(at::kDouble).contiguous().view({-1, H, W});
  at::Tensor tmp = at::empty_like(in), out = at::empty_like(in);
  const auto k = gaussian_kernel(sigma, truncate);
  const int64_t B = in.size(0);
  const double* ip = in.data_ptr<double>();
  double* tp = tmp.data_ptr<double>();
  double* op = out.data_ptr<double>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> line;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t off = b * H * W;
      // axis 0: along rows (columns of the image), one line per column
      pass(ip + off, tp + off, H, W, W, 1, k, f32, line);
      // axis 1: along each row
      pass(tp + off, op + off, W, 1, H, W, k, f32, line);
    }
  });
  return out.view(maps.sizes()).to(maps.scalar_type());
}

at::Tensor postprocess_maps(const at::Tensor& maps, const PostprocessOptions& o) {
  at::Tensor m = o.eval_size > 0 ? upsample_maps(maps, o.eval_size, o.upsample) : maps.to(at::kFloat);
  return o.sigma > 0 ? gaussian_smooth(m, o.sigma, o.truncate) : m;
}

}  // namespace zsad::models
