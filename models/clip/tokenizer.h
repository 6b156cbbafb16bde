#pragma once
// OpenAI CLIP's byte-level BPE tokenizer (simple_tokenizer.py), reading
// bpe_simple_vocab_16e6.txt.gz. ftfy's repairs of broken text are out of scope.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zsad::models {

class Tokenizer {
 public:
  static constexpr int64_t kSot = 49406;
  static constexpr int64_t kEot = 49407;
  static constexpr int64_t kContextLength = 77;

  // Throws zsad::Error naming the path if the vocabulary is missing or malformed.
  explicit Tokenizer(const std::string& vocab_path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // BPE ids of the cleaned text, without SOT/EOT.
  std::vector<int64_t> encode(const std::string& text) const;
  // [SOT] + encode(text) + [EOT], unpadded. If longer than `context_length` it is cut to
  // context_length with EOT last (OpenAI's truncate=True) and *truncated is set.
  std::vector<int64_t> tokenize(const std::string& text, int64_t context_length = kContextLength,
                                bool* truncated = nullptr) const;
  // tokenize() zero-padded to context_length (the [77] row CLIP's text tower takes).
  std::vector<int64_t> tokenize_padded(const std::string& text, int64_t context_length = kContextLength,
                                       bool* truncated = nullptr) const;
  int64_t vocab_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zsad::models
