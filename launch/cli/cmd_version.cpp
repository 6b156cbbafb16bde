#include <iostream>

#include "launch/cli/args.h"
#include "launch/cli/command.h"

namespace {
int run_version(const std::vector<std::string>& tokens) {
  zsad::cli::Args args("zsad version");
  args.parse(tokens);
  std::cout << "zsad 0.1.0\n";
  return 0;
}
}  // namespace

ZSAD_COMMAND("version", "print the zsad version", run_version);
