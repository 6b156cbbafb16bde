// `zsad tokenize --vocab PATH TEXT...`: CLIP BPE ids, one JSON array per text and line.
#include <iostream>
#include <sstream>

#include "launch/cli/args.h"
#include "launch/cli/command.h"
#include "models/clip/tokenizer.h"

namespace {
int run_tokenize(const std::vector<std::string>& tokens) {
  zsad::cli::Args args(
      "zsad tokenize --vocab PATH TEXT...\n"
      "Prints one JSON array of CLIP token ids per TEXT (SOT and EOT included, unpadded). Texts longer\n"
      "than 77 tokens are cut to 77 with EOT last and a warning on stderr. Put `--` before texts that\n"
      "start with `--`.");
  args.flag("vocab", "path to OpenAI's bpe_simple_vocab_16e6.txt.gz").positionals("TEXT", 1);
  args.parse(tokens);
  const zsad::models::Tokenizer tokenizer(args.get("vocab"));
  const auto& texts = args.rest();
  for (size_t i = 0; i < texts.size(); ++i) {
    bool truncated = false;
    const std::vector<int64_t> ids =
        tokenizer.tokenize(texts[i], zsad::models::Tokenizer::kContextLength, &truncated);
    if (truncated) {
      std::cerr << "zsad tokenize: warning: text " << i << " (0-based) has "
                << tokenizer.encode(texts[i]).size() + 2 << " tokens; truncated to "
                << zsad::models::Tokenizer::kContextLength << " with EOT last\n";
    }
    std::ostringstream line;
    line << '[';
    for (size_t k = 0; k < ids.size(); ++k) line << (k ? ", " : "") << ids[k];
    line << "]\n";
    std::cout << line.str();
  }
  std::cout.flush();
  return 0;
}
}  // namespace

ZSAD_COMMAND("tokenize", "CLIP BPE token ids of texts, one JSON array per line", run_tokenize);
