// `zsad leaderboard` over a synthetic tree (several methods, datasets, 2-3 seeds, a
// training-free single-seed method, malformed files) in all four formats, checked against
// means/stds/best cells computed independently by tests/results/leaderboard_reference.py.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "results/leaderboard/render.h"
#include "test_util.h"

namespace zsad::results {
namespace {

using nlohmann::json;
using namespace zsad::results::testing;

std::string zsad_binary() {
  const char* b = std::getenv("ZSAD_BINARY");
  if (b && *b) return b;
  // Run outside ctest: the executable next to this build's tests/ directory.
  return (std::filesystem::canonical("/proc/self/exe").parent_path().parent_path() / "launch" / "zsad").string();
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string l;
  while (std::getline(ss, l)) out.push_back(l);
  return out;
}

std::string find_line(const std::string& text, const std::string& prefix) {
  for (const auto& l : lines(text)) {
    if (l.rfind(prefix, 0) == 0) return l;
  }
  return "";
}

std::string replace_all(std::string s, const std::string& a, const std::string& b) {
  for (size_t p = s.find(a); p != std::string::npos; p = s.find(a, p + b.size())) s.replace(p, a.size(), b);
  return s;
}

// Parses CSV with quoted fields.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') { field += '"'; ++i; }
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') quoted = true;
    else if (c == ',') { rows.back().push_back(field); field.clear(); }
    else if (c == '\n') { rows.back().push_back(field); field.clear(); rows.emplace_back(); }
    else field += c;
  }
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

class Leaderboard : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(temp_dir("leaderboard"));
    auto r = run(python() + " " + script("leaderboard_reference.py") + " make-tree " + *dir_ + "/tree");
    ASSERT_EQ(r.status, 0) << r.out;
    expected_ = new json(json::parse(r.out));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete expected_;
  }
  // Runs the CLI; returns the output file's text and stderr.
  static std::pair<std::string, std::string> board(const std::string& format, const std::string& extra = "") {
    const std::string out = *dir_ + "/board." + format, err = *dir_ + "/stderr." + format;
    auto r = run(zsad_binary() + " leaderboard " + *dir_ + "/tree --format " + format + " --out " + out + " " + extra +
                 " 2>" + err);
    EXPECT_EQ(r.status, 0) << read(err);
    return {read(out), read(err)};
  }
  static std::string* dir_;
  static json* expected_;
};
std::string* Leaderboard::dir_ = nullptr;
json* Leaderboard::expected_ = nullptr;

TEST_F(Leaderboard, MarkdownRowsMatchIndependentMeansStdsAndBest) {
  auto [md, err] = board("md");
  // Header: the expected columns in order.
  std::string header = "| Method | n |";
  for (const auto& c : (*expected_)["columns"]) {
    header += " " + c[0].get<std::string>() + " " + metric_label(c[1].get<std::string>()) + " |";
  }
  EXPECT_NE(md.find(header + "\n"), std::string::npos) << md;
  int rows = 0;
  for (auto it = (*expected_)["rows"].begin(); it != (*expected_)["rows"].end(); ++it) {
    std::string want = "| " + it.key() + " | " + std::to_string(it.value()["n"].get<int>()) + " |";
    for (const auto& c : it.value()["cells"]) want += " " + c.get<std::string>() + " |";
    EXPECT_EQ(find_line(md, "| " + it.key() + " |"), want);
    ++rows;
  }
  EXPECT_EQ(rows, 4);
  EXPECT_NE(md.find("## Per-class tables"), std::string::npos);
  EXPECT_NE(md.find("### mvtec — I-AUROC per class"), std::string::npos);
}

TEST_F(Leaderboard, CsvValuesMatchIndependentComputation) {
  auto [csv, err] = board("csv");
  auto rows = parse_csv(csv);
  ASSERT_GT(rows.size(), 1u);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < rows[0].size(); ++i) col[rows[0][i]] = i;
  std::map<std::string, std::vector<std::string>> by_key;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& r = rows[i];
    by_key[r[col["table"]] + "|" + r[col["row"]] + "|" + r[col["column"]] + "|" + r[col["metric"]]] = r;
  }
  int checked = 0;
  const auto& columns = (*expected_)["columns"];
  for (auto it = (*expected_)["rows"].begin(); it != (*expected_)["rows"].end(); ++it) {
    for (size_t j = 0; j < columns.size(); ++j) {
      const std::string key = "main|" + it.key() + "|" + columns[j][0].get<std::string>() + "|" + columns[j][1].get<std::string>();
      ASSERT_TRUE(by_key.count(key)) << key;
      const auto& r = by_key[key];
      const auto& v = it.value()["values"][j];
      if (v[0].is_null()) {
        EXPECT_EQ(r[col["mean_pct"]], "") << key;
      } else {
        EXPECT_NEAR(std::stod(r[col["mean_pct"]]), v[0].get<double>(), 1e-5) << key;
        ++checked;
      }
      if (v[1].is_null()) {
        EXPECT_EQ(r[col["std_pct"]], "") << key;
      } else {
        EXPECT_NEAR(std::stod(r[col["std_pct"]]), v[1].get<double>(), 1e-5) << key;
      }
    }
  }
  EXPECT_GT(checked, 60);
  // Per-class tables: mean ± std over seeds of each class value.
  int per_class = 0;
  for (auto it = (*expected_)["per_class"].begin(); it != (*expected_)["per_class"].end(); ++it) {
    std::string k = it.key();  // label|dataset/metric|class
    const size_t a = k.find('|'), b = k.rfind('|');
    const std::string label = k.substr(0, a), table = k.substr(a + 1, b - a - 1), cls = k.substr(b + 1);
    const std::string metric = table.substr(table.find('/') + 1);
    const std::string key = table + "|" + label + "|" + cls + "|" + metric;
    ASSERT_TRUE(by_key.count(key)) << key;
    EXPECT_NEAR(std::stod(by_key[key][col["mean_pct"]]), it.value()[0].get<double>(), 1e-5) << key;
    if (!it.value()[1].is_null()) EXPECT_NEAR(std::stod(by_key[key][col["std_pct"]]), it.value()[1].get<double>(), 1e-5) << key;
    EXPECT_EQ(by_key[key][col["n"]], std::to_string(it.value()[2].get<int>())) << key;
    ++per_class;
  }
  EXPECT_GT(per_class, 100);
}

TEST_F(Leaderboard, LatexIsBooktabsWithEscapingAndMatchingRows) {
  auto [tex, err] = board("tex");
  for (const char* cmd : {"\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}", "\\cmidrule(lr)"}) {
    EXPECT_NE(tex.find(cmd), std::string::npos) << cmd;
  }
  EXPECT_EQ(tex.find("\\hline"), std::string::npos);
  // The special variant tag=a&b%c$#_{x}~^\ escaped by hand.
  const std::string escaped = "tag=a\\&b\\%c\\$\\#\\_\\{x\\}\\textasciitilde{}\\textasciicircum{}\\textbackslash{}";
  ASSERT_EQ((*expected_)["special"], "tag=a&b%c$#_{x}~^\\");
  for (auto it = (*expected_)["rows"].begin(); it != (*expected_)["rows"].end(); ++it) {
    std::string label = replace_all(it.key(), (*expected_)["special"].get<std::string>(), escaped);
    std::string want = label + " & " + std::to_string(it.value()["n"].get<int>());
    for (const auto& c : it.value()["cells"]) {
      std::string t = replace_all(replace_all(c.get<std::string>(), "±", "$\\pm$"), "–", "--");
      if (t.rfind("**", 0) == 0) t = "\\textbf{" + t.substr(2, t.size() - 4) + "}";
      want += " & " + t;
    }
    want += " \\\\";
    EXPECT_EQ(find_line(tex, label + " & "), want);
  }
}

TEST_F(Leaderboard, HtmlIsSelfContainedSortableAndMatchesRows) {
  auto [html, err] = board("html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_NE(html.find("class=\"sortable\""), std::string::npos);
  const std::regex td("<td[^>]*>(.*?)</td>");
  for (auto it = (*expected_)["rows"].begin(); it != (*expected_)["rows"].end(); ++it) {
    const std::string label = html_escape(it.key());
    std::string line = find_line(html, "<tr><td>" + label + "</td>");
    ASSERT_FALSE(line.empty()) << label;
    std::vector<std::string> cells;
    for (std::sregex_iterator m(line.begin(), line.end(), td), end; m != end; ++m) cells.push_back((*m)[1]);
    const auto& want = it.value()["cells"];
    ASSERT_EQ(cells.size(), want.size() + 2);
    EXPECT_EQ(cells[1], std::to_string(it.value()["n"].get<int>()));
    for (size_t j = 0; j < want.size(); ++j) {
      std::string t = want[j].get<std::string>();
      if (t.rfind("**", 0) == 0) t = "<strong>" + t.substr(2, t.size() - 4) + "</strong>";
      EXPECT_EQ(cells[j + 2], t) << label << " column " << j;
    }
  }
}

TEST_F(Leaderboard, MalformedFilesReportedByPathAndSkipped) {
  auto [md, err] = board("md");
  for (auto it = (*expected_)["bad"].begin(); it != (*expected_)["bad"].end(); ++it) {
    const std::string line = find_line(err, "zsad leaderboard: skipped " + *dir_ + "/tree/broken/results/" + it.key() + ": ");
    ASSERT_FALSE(line.empty()) << it.key() << "\n" << err;
    EXPECT_NE(line.find(it.value().get<std::string>()), std::string::npos) << line;
  }
  EXPECT_EQ(err.find("config.json"), std::string::npos) << "unrelated JSON outside results/ must be ignored";
  // Nothing valid at all: an error naming the directory, exit 1, not a crash.
  auto r = run(zsad_binary() + " leaderboard " + *dir_ + "/tree/broken 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("no valid zsad.results/1 files"), std::string::npos) << r.out;
  r = run(zsad_binary() + " leaderboard " + *dir_ + "/tree --group-by method,seed 2>&1");
  EXPECT_EQ(r.status, 2) << r.out;
}

TEST_F(Leaderboard, PublishedBaselinesFlaggedWhenProtocolsDiffer) {
  // A baseline file of our own plus a malformed one; the repository's files are parsed too.
  const std::string bdir = *dir_ + "/baselines";
  std::filesystem::create_directories(bdir);
  std::filesystem::copy(source_dir() + "/results/baselines", bdir, std::filesystem::copy_options::overwrite_existing | std::filesystem::copy_options::recursive);
  std::ofstream(bdir + "/lowres.yaml") << "source: \"Test paper, Table 9\"\nprotocol: {eval_size: 256}\nentries:\n"
                                          "  - {method: LowRes, test_dataset: mvtec, values: {image_auroc: 99.9, pixel_auroc: 99.9}}\n";
  std::ofstream(bdir + "/broken.yaml") << "source: x\nentries:\n  - {method: Y, test_dataset: mvtec, values: {image_auroc: 250}}\n";
  auto [md, err] = board("md", "--baselines-dir " + bdir);
  EXPECT_NE(err.find("skipped " + bdir + "/broken.yaml: "), std::string::npos) << err;
  EXPECT_NE(err.find("percentage"), std::string::npos) << err;
  // AnomalyCLIP's table reports PRO from cal_pro_score; our runs use the exact AUPRO: flagged,
  // and never bold although 81.4 beats every run of ours on mvtec.
  std::string ac = find_line(md, "| AnomalyCLIP (train visa→mvtec; else mvtec) — published [");
  ASSERT_FALSE(ac.empty()) << md;
  EXPECT_NE(ac.find(" 81.4† |"), std::string::npos) << ac;
  EXPECT_NE(ac.find(" 91.5 |"), std::string::npos) << ac;  // image AUROC: same protocol, unflagged
  EXPECT_NE(md.find("pro_mode anomalyclip (ours: exact)"), std::string::npos);
  // eval_size 256 vs our 518: pixel metrics flagged, image metrics not (and 99.9 is best there).
  std::string low = find_line(md, "| LowRes — published [");
  ASSERT_FALSE(low.empty()) << md;
  EXPECT_NE(low.find(" **99.9** |"), std::string::npos) << low;
  EXPECT_NE(low.find(" 99.9† |"), std::string::npos) << low;
  EXPECT_NE(md.find("eval_size 256 (ours: 518)"), std::string::npos);
  // Our own best AUPRO on mvtec stays bold (expected row from the reference).
  const auto& cops = (*expected_)["rows"]["cops (lr=0.001, shots=0; train: visa)"]["cells"];
  bool found = false;
  for (const auto& c : cops) found |= c.get<std::string>() == "**79.9 ± 11.5**";
  EXPECT_TRUE(found);
  EXPECT_NE(md.find("**79.9 ± 11.5**"), std::string::npos);
}

TEST(LatexEscape, EverySpecialCharacter) {
  EXPECT_EQ(latex_escape("a_b&c%d$e#f{g}h~i^j\\k"),
            "a\\_b\\&c\\%d\\$e\\#f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k");
  EXPECT_EQ(latex_escape("95.0 ± 0.3†"), "95.0 $\\pm$ 0.3$^\\dagger$");
  EXPECT_EQ(latex_escape("train visa→mvtec — x – y"), "train visa$\\to$mvtec --- x -- y");
  EXPECT_EQ(html_escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

}  // namespace
}  // namespace zsad::results
