#include "results/leaderboard/render.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "common/error.h"
#include "results/metrics_table.h"

namespace zsad::results {

TableFormat parse_table_format(const std::string& s) {
  if (s == "md" || s == "markdown") return TableFormat::kMarkdown;
  if (s == "csv") return TableFormat::kCsv;
  if (s == "tex" || s == "latex") return TableFormat::kLatex;
  if (s == "html") return TableFormat::kHtml;
  throw Error("format '" + s + "' is not one of md, csv, tex, html");
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    switch (c) {
      case '\\': out += "\\textbackslash{}"; break;
      case '&': out += "\\&"; break;
      case '%': out += "\\%"; break;
      case '$': out += "\\$"; break;
      case '#': out += "\\#"; break;
      case '_': out += "\\_"; break;
      case '{': out += "\\{"; break;
      case '}': out += "\\}"; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      case '<': out += "\\textless{}"; break;
      case '>': out += "\\textgreater{}"; break;
      default:
        if (s.compare(i, 3, "–") == 0) { out += "--"; i += 2; }
        else if (s.compare(i, 3, "—") == 0) { out += "---"; i += 2; }
        else if (s.compare(i, 2, "±") == 0) { out += "$\\pm$"; i += 1; }
        else if (s.compare(i, 3, "†") == 0) { out += "$^\\dagger$"; i += 2; }
        else if (s.compare(i, 3, "‡") == 0) { out += "$^\\ddagger$"; i += 2; }
        else if (s.compare(i, 2, "σ") == 0) { out += "$\\sigma$"; i += 1; }
        else if (s.compare(i, 3, "→") == 0) { out += "$\\to$"; i += 2; }
        else out += c;
    }
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

std::string marks_of(const Cell& c) {
  std::string m;
  for (const auto& k : c.marks) m += k;
  return m;
}

// "95.0 ± 0.3 (n=2)†" — the value text without bold; std and n only where they apply.
std::string cell_text(const Cell& c, const Row& r) {
  if (!c.mean) return "–";
  std::string s = format_percent(c.mean);
  if (c.std) s += " ± " + format_percent(c.std);
  if (!r.published && c.n < r.seeds) s += " (n=" + std::to_string(c.n) + ")";
  return s + marks_of(c);
}

std::string header_of(const Table& t, const Column& c) {
  if (t.id == "main") return c.group + " " + metric_label(c.metric);
  return c.group;
}

// Published rows carry a numbered source; the same numbering is used in every format.
std::map<std::string, int> source_numbers(const Leaderboard& lb) {
  std::map<std::string, int> n;
  for (const auto& r : lb.main.rows) {
    if (r.published && !n.count(r.source)) {
      int k = static_cast<int>(n.size()) + 1;
      n[r.source] = k;
    }
  }
  return n;
}

std::string row_label(const Row& r, const std::map<std::string, int>& sources) {
  if (!r.published) return r.label;
  return r.label + " — published [" + std::to_string(sources.at(r.source)) + "]";
}

std::string seeds_text(const Row& r) { return r.published ? "pub." : std::to_string(r.seeds); }

std::vector<std::pair<std::string, int>> ordered_sources(const std::map<std::string, int>& sources) {
  std::vector<std::pair<std::string, int>> v(sources.begin(), sources.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  return v;
}

const char* kCaption = "Values in percent (one decimal): mean ± sample std over seeds; n = number of seeds; "
                       "– = undefined; bold = best per column.";

// ---------------------------------------------------------------- Markdown
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '*') out += "\\*";
    else out += c;
  }
  return out;
}

void markdown_table(std::ostringstream& o, const Table& t, const std::map<std::string, int>& sources) {
  o << "| Method | n |";
  for (const auto& c : t.columns) o << " " << md_cell(header_of(t, c)) << " |";
  o << "\n|:---|---:|";
  for (size_t i = 0; i < t.columns.size(); ++i) o << "---:|";
  o << "\n";
  for (const auto& r : t.rows) {
    o << "| " << md_cell(row_label(r, sources)) << " | " << seeds_text(r) << " |";
    for (const auto& c : r.cells) {
      std::string text = md_cell(cell_text(c, r));
      o << " " << (c.best ? "**" + text + "**" : text) << " |";
    }
    o << "\n";
  }
}

std::string render_markdown(const Leaderboard& lb) {
  std::ostringstream o;
  auto sources = source_numbers(lb);
  o << "# Leaderboard\n\n" << kCaption << "\n\n## Main table\n\n";
  markdown_table(o, lb.main, sources);
  if (!lb.notes.empty() || !sources.empty()) {
    o << "\n";
    for (const auto& n : lb.notes) o << (n.rfind("  ", 0) == 0 ? "  - " + md_cell(n.substr(2)) : "- " + md_cell(n)) << "\n";
    for (const auto& [s, k] : ordered_sources(sources)) o << "- [" << k << "] " << md_cell(s) << "\n";
  }
  if (!lb.per_class.empty()) o << "\n## Per-class tables\n";
  for (const auto& t : lb.per_class) {
    o << "\n### " << md_cell(t.title) << "\n\n";
    markdown_table(o, t, sources);
  }
  return o.str();
}

// ---------------------------------------------------------------- CSV
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string fixed6(const std::optional<double>& fraction) {
  if (!fraction) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", 100.0 * *fraction);
  return buf;
}

std::string render_csv(const Leaderboard& lb) {
  std::ostringstream o;
  o << "table,row,published,source,column,metric,mean_pct,std_pct,n,best,marks\n";
  auto emit = [&](const Table& t) {
    for (const auto& r : t.rows) {
      for (size_t i = 0; i < t.columns.size(); ++i) {
        const Cell& c = r.cells[i];
        o << csv_field(t.id) << "," << csv_field(r.label) << "," << (r.published ? 1 : 0) << ","
          << csv_field(r.source) << "," << csv_field(t.columns[i].group) << "," << t.columns[i].metric << ","
          << fixed6(c.mean) << "," << fixed6(c.std) << "," << c.n << "," << (c.best ? 1 : 0) << ","
          << csv_field(marks_of(c)) << "\n";
      }
    }
  };
  emit(lb.main);
  for (const auto& t : lb.per_class) emit(t);
  return o.str();
}

// ---------------------------------------------------------------- LaTeX (booktabs)
void latex_table(std::ostringstream& o, const Table& t, const std::map<std::string, int>& sources,
                 const std::vector<std::string>& notes) {
  o << "\\begin{table}[t]\n\\centering\n\\small\n";
  o << "\\caption{" << latex_escape(t.title) << ". " << latex_escape(kCaption) << "}\n";
  o << "\\begin{tabular}{lr" << std::string(t.columns.size(), 'r') << "}\n\\toprule\n";
  if (t.id == "main") {
    // Dataset groups over their metric columns.
    o << " & ";
    std::string rules;
    size_t i = 0;
    while (i < t.columns.size()) {
      size_t j = i;
      while (j < t.columns.size() && t.columns[j].group == t.columns[i].group) ++j;
      o << " & \\multicolumn{" << (j - i) << "}{c}{" << latex_escape(t.columns[i].group) << "}";
      rules += "\\cmidrule(lr){" + std::to_string(i + 3) + "-" + std::to_string(j + 2) + "}";
      i = j;
    }
    o << " \\\\\n" << rules << "\n";
    o << "Method & $n$";
    for (const auto& c : t.columns) o << " & " << latex_escape(metric_label(c.metric));
  } else {
    o << "Method & $n$";
    for (const auto& c : t.columns) o << " & " << latex_escape(c.group);
  }
  o << " \\\\\n\\midrule\n";
  bool in_published = false;
  for (const auto& r : t.rows) {
    if (r.published && !in_published) {
      o << "\\midrule\n";
      in_published = true;
    }
    std::string label = latex_escape(r.label);
    if (r.published) label += " [" + std::to_string(sources.at(r.source)) + "]";
    o << label << " & " << latex_escape(seeds_text(r));
    for (const auto& c : r.cells) {
      std::string text = latex_escape(cell_text(c, r));
      o << " & " << (c.best ? "\\textbf{" + text + "}" : text);
    }
    o << " \\\\\n";
  }
  o << "\\bottomrule\n\\end{tabular}\n";
  if (!notes.empty() || (t.id == "main" && !sources.empty())) {
    o << "\\par\\smallskip\\footnotesize\n";
    for (const auto& n : notes) o << latex_escape(n) << "\\\\\n";
    if (t.id == "main") {
      for (const auto& [s, k] : ordered_sources(sources)) o << "[" << k << "] " << latex_escape(s) << "\\\\\n";
    }
  }
  o << "\\end{table}\n";
}

std::string render_latex(const Leaderboard& lb) {
  std::ostringstream o;
  auto sources = source_numbers(lb);
  o << "% Generated by `zsad leaderboard --format tex`. Requires \\usepackage{booktabs}.\n";
  latex_table(o, lb.main, sources, lb.notes);
  for (const auto& t : lb.per_class) {
    o << "\n";
    latex_table(o, t, sources, {});
  }
  return o.str();
}

// ---------------------------------------------------------------- HTML
const char* kCss = R"(body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444;cursor:pointer;user-select:none}
thead th[aria-sort=ascending]::after{content:" \25B2"}thead th[aria-sort=descending]::after{content:" \25BC"}
tr.published td{color:#555;font-style:italic}
caption{caption-side:top;text-align:left;font-weight:bold;padding:4px 0}
.notes{font-size:13px;color:#444})";

// Click a header to sort by that column (numbers by their data-v value; undefined last).
const char* kSortScript = R"(<script>
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('thead th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('thead th').forEach(function(o){ o.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = a.cells[col], y = b.cells[col];
        var u = x.getAttribute('data-v'), v = y.getAttribute('data-v');
        if (u !== null && v !== null) {
          if (u === '') return 1; if (v === '') return -1;
          return asc ? u - v : v - u;
        }
        var s = x.textContent.localeCompare(y.textContent);
        return asc ? s : -s;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
</script>)";

void html_table(std::ostringstream& o, const Table& t, const std::map<std::string, int>& sources) {
  o << "<table class=\"sortable\">\n<caption>" << html_escape(t.title) << "</caption>\n<thead><tr><th>Method</th><th>n</th>";
  for (const auto& c : t.columns) {
    if (t.id == "main") {
      o << "<th>" << html_escape(c.group) << "<br>" << html_escape(metric_label(c.metric)) << "</th>";
    } else {
      o << "<th>" << html_escape(c.group) << "</th>";
    }
  }
  o << "</tr></thead>\n<tbody>\n";
  for (const auto& r : t.rows) {
    o << (r.published ? "<tr class=\"published\">" : "<tr>");
    std::string label = html_escape(r.label);
    if (r.published) label += " — published <sup>[" + std::to_string(sources.at(r.source)) + "]</sup>";
    o << "<td>" << label << "</td><td data-v=\"" << (r.published ? "" : std::to_string(r.seeds)) << "\">"
      << html_escape(seeds_text(r)) << "</td>";
    for (const auto& c : r.cells) {
      char v[64] = "";
      if (c.mean) std::snprintf(v, sizeof(v), "%.6f", 100.0 * *c.mean);
      std::string text = html_escape(cell_text(c, r));
      o << "<td data-v=\"" << v << "\">" << (c.best ? "<strong>" + text + "</strong>" : text) << "</td>";
    }
    o << "</tr>\n";
  }
  o << "</tbody>\n</table>\n";
}

std::string render_html(const Leaderboard& lb) {
  std::ostringstream o;
  auto sources = source_numbers(lb);
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>zsad leaderboard</title>\n<style>\n"
    << kCss << "\n</style>\n</head>\n<body>\n<h1>Leaderboard</h1>\n<p>" << html_escape(kCaption)
    << " Click a column header to sort.</p>\n<h2>Main table</h2>\n";
  html_table(o, lb.main, sources);
  if (!lb.notes.empty() || !sources.empty()) {
    o << "<ul class=\"notes\">\n";
    for (const auto& n : lb.notes) o << "<li>" << html_escape(n) << "</li>\n";
    for (const auto& [s, k] : ordered_sources(sources)) o << "<li>[" << k << "] " << html_escape(s) << "</li>\n";
    o << "</ul>\n";
  }
  if (!lb.per_class.empty()) o << "<h2>Per-class tables</h2>\n";
  for (const auto& t : lb.per_class) html_table(o, t, sources);
  o << kSortScript << "\n</body>\n</html>\n";
  return o.str();
}

}  // namespace

std::string render(const Leaderboard& lb, TableFormat format) {
  switch (format) {
    case TableFormat::kMarkdown: return render_markdown(lb);
    case TableFormat::kCsv: return render_csv(lb);
    case TableFormat::kLatex: return render_latex(lb);
    case TableFormat::kHtml: return render_html(lb);
  }
  return "";
}

}  // namespace zsad::results
