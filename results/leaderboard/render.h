#pragma once
// Renders a Leaderboard as Markdown, CSV (long format, one line per cell), LaTeX (booktabs)
// or one self-contained HTML file (inline CSS, optional inline sorting script; the tables are
// plain HTML and readable without JavaScript).
#include <string>

#include "results/leaderboard/leaderboard.h"

namespace zsad::results {

enum class TableFormat { kMarkdown, kCsv, kLatex, kHtml };
TableFormat parse_table_format(const std::string& s);  // md|csv|tex|html; throws zsad::Error

std::string render(const Leaderboard& lb, TableFormat format);

// LaTeX-escapes text (\ & % $ # _ { } ~ ^ and the few non-ASCII marks we print).
std::string latex_escape(const std::string& s);
std::string html_escape(const std::string& s);

}  // namespace zsad::results
