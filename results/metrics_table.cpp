#include "results/metrics_table.h"

#include <cstdio>
#include <vector>

namespace zsad::results {

std::string format_percent(const std::optional<double>& fraction, int decimals) {
  if (!fraction) return "–";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, 100.0 * *fraction);
  std::string s = buf;
  if (s == "-0.0") s = "0.0";
  return s;
}

namespace {
// Display width of UTF-8 text (the only multi-byte character we print is "–").
size_t width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80;
  return w;
}
}  // namespace

std::string format_class_table(const DatasetMetrics& m) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header{"class"};
  for (const char* k : kMetricKeys) header.push_back(k);
  rows.push_back(header);
  auto add = [&](const std::string& name, const MetricValues& v) {
    std::vector<std::string> r{name};
    for (size_t i = 0; i < kMetricKeys.size(); ++i) r.push_back(format_percent(v.at(i)));
    rows.push_back(r);
  };
  for (const auto& [name, v] : m.classes) add(name, v);
  add("mean", m.mean);
  std::vector<size_t> w(header.size(), 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], width(r[c]));
  }
  std::string out;
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const auto& r = rows[ri];
    if (ri + 1 == rows.size()) {  // rule above the mean
      for (size_t c = 0; c < r.size(); ++c) out += std::string(w[c], '-') + (c + 1 < r.size() ? "  " : "\n");
    }
    for (size_t c = 0; c < r.size(); ++c) {
      const std::string pad(w[c] - width(r[c]), ' ');
      out += c == 0 ? r[c] + pad : pad + r[c];
      out += c + 1 < r.size() ? "  " : "\n";
    }
  }
  return out;
}

}  // namespace zsad::results
