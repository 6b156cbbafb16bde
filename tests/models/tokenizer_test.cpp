// CLIP BPE tokenizer against the 64 cases made with OpenAI's simple_tokenizer
// ($ZSAD_SHARED_DIR/clip/tokenizer_cases.jsonl), against Python's own html.unescape / isspace /
// lower (tokenizer_clean_reference.py), and through `zsad tokenize`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "models/clip/tokenizer.h"

namespace {

using zsad::models::Tokenizer;
using Ids = std::vector<int64_t>;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::runtime_error(std::string("environment variable ") + name + " is not set (run via ctest)");
  return v;
}

std::string vocab_path() { return env("ZSAD_SHARED_DIR") + "/clip/bpe_simple_vocab_16e6.txt.gz"; }

const Tokenizer& shared_tokenizer() {
  static const Tokenizer tokenizer(vocab_path());
  return tokenizer;
}

struct Case {
  std::string text;
  Ids ids;
  Ids ids_context77;  // only for texts longer than the context
};

std::vector<Case> reference_cases() {
  const std::string path = env("ZSAD_SHARED_DIR") + "/clip/tokenizer_cases.jsonl";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    Case c{j.at("text").get<std::string>(), j.at("ids").get<Ids>(), {}};
    if (j.contains("ids_context77")) c.ids_context77 = j.at("ids_context77").get<Ids>();
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string temp_dir() {
  std::string tmpl = ::testing::TempDir() + "zsad_tok_XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RunResult {
  int exit_code;
  std::string out, err;
};

RunResult run(const std::vector<std::string>& argv) {
  const std::string dir = temp_dir();
  std::string cmd;
  for (const auto& a : argv) cmd += shell_quote(a) + " ";
  cmd += "> " + dir + "/out 2> " + dir + "/err";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_all(dir + "/out"), read_all(dir + "/err")};
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

TEST(Tokenizer, VocabularyHasOpenAISizeAndSpecialIds) {
  const Tokenizer& tok = shared_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 49408);
  EXPECT_EQ(tok.encode("<|startoftext|>"), Ids{49406});
  EXPECT_EQ(tok.encode("<|endoftext|>"), Ids{49407});
}

TEST(Tokenizer, MatchesEveryOpenAIReferenceCase) {
  const Tokenizer& tok = shared_tokenizer();
  const auto cases = reference_cases();
  ASSERT_EQ(cases.size(), 64u);
  int long_cases = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE("text: " + c.text);
    bool truncated = true;
    EXPECT_EQ(tok.tokenize(c.text, 1 << 20, &truncated), c.ids);
    EXPECT_FALSE(truncated);
    ASSERT_GE(c.ids.size(), 2u);
    EXPECT_EQ(tok.encode(c.text), Ids(c.ids.begin() + 1, c.ids.end() - 1));
    if (!c.ids_context77.empty()) {
      ++long_cases;
      ASSERT_GT(c.ids.size(), 77u);
      EXPECT_EQ(tok.tokenize(c.text, 77, &truncated), c.ids_context77);
      EXPECT_TRUE(truncated);
      EXPECT_EQ(tok.tokenize(c.text), c.ids_context77);  // default context is 77
      EXPECT_EQ(tok.tokenize_padded(c.text), c.ids_context77);
    } else if (c.ids.size() <= 77) {
      EXPECT_EQ(tok.tokenize(c.text, 77, &truncated), c.ids);
      EXPECT_FALSE(truncated);
      Ids padded = c.ids;
      padded.resize(77, 0);
      EXPECT_EQ(tok.tokenize_padded(c.text), padded);
    }
  }
  EXPECT_EQ(long_cases, 1);
}

TEST(Tokenizer, TruncationKeepsEotLastForAnyContext) {
  const Tokenizer& tok = shared_tokenizer();
  const Ids full = tok.tokenize("a photo of a damaged bottle.", 1000);
  ASSERT_EQ(full.size(), 9u);
  bool truncated = false;
  const Ids five = tok.tokenize("a photo of a damaged bottle.", 5, &truncated);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(five, (Ids{full[0], full[1], full[2], full[3], Tokenizer::kEot}));
  EXPECT_THROW(tok.tokenize("x", 0), zsad::Error);
}

// Cleaning (HTML references, whitespace, lower-case) checked against Python's own functions:
// the raw text must give the same ids as the text Python cleaned.
TEST(Tokenizer, CleaningMatchesPythonHtmlUnescapeWhitespaceAndLower) {
  const Tokenizer& tok = shared_tokenizer();
  const std::string dir = temp_dir();
  const std::string script = env("ZSAD_SOURCE_DIR") + "/tests/models/tokenizer_clean_reference.py";
  const RunResult r = run({env("ZSAD_PYTHON"), script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = lines(r.out);
  ASSERT_GT(rows.size(), 1000u);
  size_t checked = 0, changed = 0;
  for (const auto& row : rows) {
    auto j = nlohmann::json::parse(row);
    const std::string text = j.at("text"), clean = j.at("clean");
    SCOPED_TRACE("text: " + text + "  python clean: " + clean);
    const Ids got = tok.encode(text);
    EXPECT_EQ(got, tok.encode(clean));
    ++checked;
    if (text != clean) ++changed;
  }
  EXPECT_EQ(checked, rows.size());
  EXPECT_GT(changed, 1000u);  // the cases exercise the cleaning, not just pass through it
}

TEST(Tokenizer, ConcurrentEncodingGivesTheSameIds) {
  const Tokenizer tok(vocab_path());  // fresh cache, so threads race on filling it
  const auto cases = reference_cases();
  std::vector<std::vector<Ids>> results(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        for (const auto& c : cases) results[t].push_back(tok.tokenize(c.text, 1 << 20));
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 2; ++t) {
    ASSERT_EQ(results[t].size(), 5 * cases.size());
    for (size_t i = 0; i < results[t].size(); ++i) EXPECT_EQ(results[t][i], cases[i % cases.size()].ids);
  }
}

void expect_error_naming(const std::string& path, const std::string& what) {
  try {
    Tokenizer tok(path);
    ADD_FAILURE() << what << ": no error for " << path;
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << what << ": " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, MissingCorruptTruncatedOrShortVocabularyIsAnError) {
  const std::string dir = temp_dir();
  expect_error_naming(dir + "/does_not_exist.txt.gz", "missing file");

  const std::string real = read_all(vocab_path());
  ASSERT_GT(real.size(), 1000000u);
  {
    std::ofstream(dir + "/truncated.txt.gz", std::ios::binary) << real.substr(0, real.size() / 2);
  }
  expect_error_naming(dir + "/truncated.txt.gz", "truncated gzip");
  {
    std::string flipped = real;
    for (size_t i = 2000; i < 2100; ++i) flipped[i] = static_cast<char>(flipped[i] ^ 0x5A);
    std::ofstream(dir + "/flipped.txt.gz", std::ios::binary) << flipped;
  }
  expect_error_naming(dir + "/flipped.txt.gz", "corrupt gzip");
  {
    std::ofstream(dir + "/plain.txt") << "#version: 0.2\ni n\nt h\n";
  }
  expect_error_naming(dir + "/plain.txt", "not gzip");
  {
    gzFile f = gzopen((dir + "/short.txt.gz").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string text = "\"bpe_simple_vocab_16e6.txt#version: 0.2\ni n\nt h\n";
    gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
    gzclose(f);
  }
  expect_error_naming(dir + "/short.txt.gz", "too few merges");
}

TEST(TokenizeCli, PrintsOneJsonArrayPerTextAndWarnsOnTruncation) {
  const auto cases = reference_cases();
  std::vector<const Case*> picked;
  for (const auto& c : cases) {
    if (c.text == "it's damaged" || c.text == "ripped &amp; torn" || c.text == "中文测试" || !c.ids_context77.empty() ||
        c.text.rfind("  many", 0) == 0)
      picked.push_back(&c);
  }
  ASSERT_EQ(picked.size(), 5u);
  std::vector<std::string> argv = {env("ZSAD_BINARY"), "tokenize", "--vocab", vocab_path()};
  for (const Case* c : picked) argv.push_back(c->text);
  const RunResult r = run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = lines(r.out);
  ASSERT_EQ(out.size(), picked.size()) << r.out;
  size_t long_index = picked.size();
  for (size_t i = 0; i < picked.size(); ++i) {
    SCOPED_TRACE(picked[i]->text);
    const Ids got = nlohmann::json::parse(out[i]).get<Ids>();
    if (!picked[i]->ids_context77.empty()) {
      long_index = i;
      EXPECT_EQ(got, picked[i]->ids_context77);
    } else {
      EXPECT_EQ(got, picked[i]->ids);
    }
  }
  ASSERT_LT(long_index, picked.size());
  const auto err = lines(r.err);
  ASSERT_EQ(err.size(), 1u) << r.err;
  EXPECT_NE(err[0].find("warning"), std::string::npos) << err[0];
  EXPECT_NE(err[0].find("text " + std::to_string(long_index)), std::string::npos) << err[0];
}

TEST(TokenizeCli, MissingVocabularyExitsOneWithOneLineNamingThePath) {
  const std::string missing = temp_dir() + "/no_vocab.txt.gz";
  const RunResult r = run({env("ZSAD_BINARY"), "tokenize", "--vocab", missing, "a photo"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  const auto err = lines(r.err);
  ASSERT_EQ(err.size(), 1u) << r.err;
  EXPECT_NE(err[0].find(missing), std::string::npos) << err[0];
}

TEST(TokenizeCli, MissingVocabFlagIsUsageError) {
  const RunResult r = run({env("ZSAD_BINARY"), "tokenize", "a photo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
