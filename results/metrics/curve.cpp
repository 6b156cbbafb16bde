#include "results/metrics/curve.h"

#include <algorithm>
#include <cmath>

#include "results/metrics/score_sort.h"

namespace zsad::results {

std::vector<float> anomalyclip_thresholds(float min_score, float max_score, int steps) {
  std::vector<float> out;
  // numpy float32 scalar arithmetic: every intermediate is rounded to float32.
  const float range = max_score - min_score;
  const float delta = range / static_cast<float>(steps);
  if (!(delta > 0.0f) || !std::isfinite(delta)) return out;
  const float ratio = range / delta;
  const auto count = static_cast<size_t>(std::ceil(static_cast<double>(ratio)));
  // numpy's arange stores start and start+step (a float32 sum) in a float64 array and fills
  // the rest as start + i*(second - start) in float64.
  const double t0 = min_score;
  const double t1 = static_cast<double>(static_cast<float>(min_score + delta));
  const double step = t1 - t0;
  for (size_t i = 0; i < count; ++i) {
    double t = i == 0 ? t0 : i == 1 ? t1 : t0 + static_cast<double>(i) * step;
    // `amaps > th` with a float32 array casts the float64 scalar to float32 (numpy 1.x rules).
    out.push_back(static_cast<float>(t));
  }
  return out;
}

CurveMetrics evaluate_curve(const CurveInput& in, const MetricOptions& options) {
  CurveMetrics out;
  const uint64_t P = in.positives, N = in.negatives;
  const bool with_pro = in.region_weight != nullptr;
  const size_t regions = with_pro ? in.region_weight->size() : 0;
  const double limit = options.fpr_limit;
  const bool exact_pro = with_pro && options.pro_mode == ProMode::kExact;
  const bool clip_pro = with_pro && options.pro_mode == ProMode::kAnomalyClip;

  // AnomalyCLIP thresholds and the (fp, pro) state recorded at each.
  std::vector<float> thr;
  std::vector<uint32_t> thr_key;
  std::vector<uint64_t> thr_fp;
  std::vector<long double> thr_pro;
  if (clip_pro) {
    thr = anomalyclip_thresholds(in.min_score, in.max_score);
    for (float t : thr) thr_key.push_back(score_key(t));
    thr_fp.assign(thr.size(), 0);
    thr_pro.assign(thr.size(), 0);
  }
  ptrdiff_t j = static_cast<ptrdiff_t>(thr.size()) - 1;

  uint64_t tp = 0, fp = 0, tp_prev = 0, fp_prev = 0;
  unsigned __int128 auc2 = 0;  // sum of dfp * (tp + tp_prev): twice the ROC area in count units
  double ap = 0, f1_max = 0;
  long double pro_sum = 0;
  // Streaming trapezoid of the exact PRO curve up to the limit (MVTec generic_util.trapezoid).
  double x_prev = 0, y_prev = 0, area = 0;
  bool limit_reached = false, limit_hit = false;
  auto add_pro_point = [&](double x, double y) {
    if (limit_reached) return;
    if (x <= limit) {
      area += 0.5 * (y + y_prev) * (x - x_prev);
      if (x == limit) limit_hit = true;
      x_prev = x;
      y_prev = y;
    } else {
      if (!limit_hit) {
        const double y_at = y_prev + (y - y_prev) * (limit - x_prev) / (x - x_prev);
        area += 0.5 * (y_at + y_prev) * (limit - x_prev);
      }
      limit_reached = true;
    }
  };
  const std::vector<double>* w = in.region_weight;

  size_t i = in.n;
  while (i > 0) {
    const uint32_t key = uint32_t(in.sorted[i - 1] >> 32);
    // State "scores > th" for every threshold th >= this score, before this group counts.
    while (j >= 0 && thr_key[j] >= key) {
      thr_fp[j] = fp;
      thr_pro[j] = pro_sum;
      --j;
    }
    while (i > 0 && uint32_t(in.sorted[i - 1] >> 32) == key) {
      const uint32_t payload = uint32_t(in.sorted[i - 1]);
      --i;
      if (payload) {
        ++tp;
        if (w) pro_sum += (*w)[payload - 1];
      } else {
        ++fp;
      }
    }
    auc2 += static_cast<unsigned __int128>(fp - fp_prev) * (tp + tp_prev);
    if (P > 0) {
      const double precision = double(tp) / double(tp + fp);
      const double recall = double(tp) / double(P), recall_prev = double(tp_prev) / double(P);
      ap += (recall - recall_prev) * precision;
      if (precision + recall > 0) f1_max = std::max(f1_max, 2 * precision * recall / (precision + recall));
    }
    if (exact_pro && N > 0 && regions > 0) {
      add_pro_point(double(fp) / double(N), std::min(double(pro_sum) / double(regions), 1.0));
    }
    tp_prev = tp;
    fp_prev = fp;
  }
  for (; j >= 0; --j) {
    thr_fp[j] = fp;
    thr_pro[j] = pro_sum;
  }

  if (P > 0 && N > 0) {
    out.auroc = static_cast<double>(static_cast<long double>(auc2) / (2.0L * P * N));
    out.ap = ap;
    out.f1_max = f1_max;
  }

  if (exact_pro) {
    if (regions == 0) {
      out.warnings.push_back("pixel_aupro undefined: no ground-truth regions");
    } else if (N == 0) {
      out.warnings.push_back("pixel_aupro undefined: no normal pixels");
    } else {
      add_pro_point(1.0, 1.0);
      out.aupro = area / limit;
    }
  }

  if (clip_pro) {
    // cal_pro_score: keep thresholds with fpr < limit, min-max stretch their FPRs to [0,1],
    // sklearn.metrics.auc. Every way the reference yields NaN or raises is "undefined".
    if (regions == 0) {
      out.warnings.push_back("pixel_aupro (anomalyclip) undefined: no ground-truth regions (mean of empty PRO list is NaN)");
    } else if (thr.empty()) {
      out.warnings.push_back("pixel_aupro (anomalyclip) undefined: all anomaly-map values are equal (threshold step is 0)");
    } else if (N == 0) {
      out.warnings.push_back("pixel_aupro (anomalyclip) undefined: no normal pixels (FPR is NaN)");
    } else {
      std::vector<double> fprs, pros;
      for (size_t t = 0; t < thr.size(); ++t) {
        const double fpr = double(thr_fp[t]) / double(N);
        if (fpr < limit) {
          fprs.push_back(fpr);
          pros.push_back(double(thr_pro[t]) / double(regions));
        }
      }
      double lo = 0, hi = 0;
      if (!fprs.empty()) {
        lo = *std::min_element(fprs.begin(), fprs.end());
        hi = *std::max_element(fprs.begin(), fprs.end());
      }
      if (fprs.size() < 2 || !(hi > lo)) {
        out.warnings.push_back("pixel_aupro (anomalyclip) undefined: " + std::to_string(fprs.size()) +
                               " of " + std::to_string(thr.size()) + " thresholds have FPR < " +
                               std::to_string(limit) +
                               (fprs.size() < 2 ? "" : " and all share one FPR") +
                               ", so AnomalyCLIP's FPR min-max stretch is 0/0 (NaN)");
      } else {
        double a = 0;
        for (size_t t = 0; t + 1 < fprs.size(); ++t) {
          const double x0 = (fprs[t] - lo) / (hi - lo), x1 = (fprs[t + 1] - lo) / (hi - lo);
          a += (x0 - x1) * (pros[t] + pros[t + 1]) / 2.0;
        }
        out.aupro = a;
      }
    }
  }
  return out;
}

}  // namespace zsad::results
