#include "data/check.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include "common/error.h"
#include "data/image.h"

namespace zsad::data {

namespace {

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Error messages start with the path; the table already shows it.
std::string strip_path(const std::string& msg, const std::string& path) {
  if (msg.compare(0, path.size(), path) == 0 && msg.size() > path.size() + 2) return msg.substr(path.size() + 2);
  return msg;
}

struct Job {
  const Sample* sample;
  std::string split;
  size_t class_slot;
};

}  // namespace

CheckReport check_dataset(const Meta& meta, const std::string& root, int threads) {
  CheckReport report;
  std::vector<Job> jobs;
  for (const char* split_name : {"train", "test"}) {
    const Split& split = meta.split(split_name);
    for (const auto& cls : split.classes) {
      ClassSummary sum;
      sum.split = split_name;
      sum.cls = cls;
      const auto& samples = split.samples.at(cls);
      for (const auto& s : samples) {
        (s.anomaly ? sum.anomalous : sum.normal)++;
        sum.masks += !s.mask_path.empty();
        jobs.push_back({&s, split_name, report.classes.size()});
      }
      if (samples.empty()) {
        report.issues.push_back({"empty-class", split_name, cls, "", "class has no samples"});
        sum.issues++;
      }
      report.classes.push_back(sum);
    }
  }
  if (meta.train.classes.empty() && meta.test.classes.empty())
    report.issues.push_back({"empty-class", "", "", "", "the index has no classes at all"});

  std::vector<std::vector<CheckIssue>> per_job(jobs.size());
  std::atomic<size_t> next{0};
  auto worker = [&]() {
    set_single_threaded_decoding();
    for (size_t i = next++; i < jobs.size(); i = next++) {
      const Job& job = jobs[i];
      const Sample& s = *job.sample;
      auto& out = per_job[i];
      const std::string img = resolve_path(root, s.img_path);
      int w = -1, h = -1;
      if (!file_exists(img)) {
        out.push_back({"missing-image", job.split, s.cls_name, img, "file does not exist"});
      } else {
        try {
          const Image im = read_image(img);
          w = im.width;
          h = im.height;
        } catch (const Error& e) {
          out.push_back({"unreadable-image", job.split, s.cls_name, img, strip_path(e.what(), img)});
        }
      }
      if (!s.mask_path.empty()) {
        const std::string mp = resolve_path(root, s.mask_path);
        if (!file_exists(mp)) {
          out.push_back({"missing-mask", job.split, s.cls_name, mp, "file does not exist (listed for " + img + ")"});
        } else {
          try {
            const Image m = read_mask(mp);
            if (w >= 0 && (m.width != w || m.height != h))
              out.push_back({"mask-size-mismatch", job.split, s.cls_name, mp,
                             "mask " + std::to_string(m.width) + "x" + std::to_string(m.height) + " but image " +
                                 std::to_string(w) + "x" + std::to_string(h) + " (" + img + ")"});
          } catch (const Error& e) {
            out.push_back({"unreadable-mask", job.split, s.cls_name, mp, strip_path(e.what(), mp)});
          }
        }
      } else if (s.anomaly && meta.capabilities.pixel_metrics) {
        out.push_back({"anomaly-without-mask", job.split, s.cls_name, img,
                       "anomalous sample has no mask_path but the dataset supports pixel metrics"});
      }
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(jobs.size())));
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  for (size_t i = 0; i < jobs.size(); ++i) {
    report.classes[jobs[i].class_slot].issues += per_job[i].size();
    for (auto& is : per_job[i]) report.issues.push_back(std::move(is));
  }
  return report;
}

std::string format_report(const CheckReport& r) {
  std::ostringstream os;
  for (const auto& is : r.issues) {
    os << "ISSUE " << is.kind << " [" << (is.split.empty() ? "-" : is.split) << "/" << (is.cls.empty() ? "-" : is.cls)
       << "] " << (is.path.empty() ? "" : is.path + ": ") << is.detail << "\n";
  }
  size_t w = 5;
  for (const auto& c : r.classes) w = std::max(w, c.cls.size());
  char line[512];
  std::snprintf(line, sizeof line, "%-5s  %-*s  %7s  %9s  %6s  %6s\n", "split", static_cast<int>(w), "class", "normal",
                "anomalous", "masks", "issues");
  os << line;
  size_t tn = 0, ta = 0, tm = 0;
  for (const auto& c : r.classes) {
    std::snprintf(line, sizeof line, "%-5s  %-*s  %7zu  %9zu  %6zu  %6zu\n", c.split.c_str(), static_cast<int>(w),
                  c.cls.c_str(), c.normal, c.anomalous, c.masks, c.issues);
    os << line;
    tn += c.normal;
    ta += c.anomalous;
    tm += c.masks;
  }
  std::snprintf(line, sizeof line, "%-5s  %-*s  %7zu  %9zu  %6zu  %6zu\n", "all", static_cast<int>(w), "", tn, ta, tm,
                r.issues.size());
  os << line;
  os << (r.clean() ? "clean: no issues found\n" : std::to_string(r.issues.size()) + " issue(s) found\n");
  return os.str();
}

}  // namespace zsad::data
