// The `zsad` executable: dispatches to the subcommands registered in launch/cli/cmd_*.cpp.
#include <iostream>

#include "common/error.h"
#include "common/exit_codes.h"
#include "launch/cli/args.h"
#include "launch/cli/command.h"

namespace zsad::cli {
std::map<std::string, Command>& command_registry() {
  static std::map<std::string, Command> registry;
  return registry;
}
}  // namespace zsad::cli

namespace {
void print_usage(std::ostream& os) {
  os << "usage: zsad <command> [args...]\n\ncommands:\n";
  for (const auto& [name, cmd] : zsad::cli::command_registry()) {
    os << "  " << name << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ') << cmd.synopsis << "\n";
  }
  os << "\n`zsad <command> --help` describes a command. Exit codes: 0 ok, 1 error, 2 usage, 75 stopped (resumable).\n";
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return zsad::kExitUsage;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return zsad::kExitSuccess;
  }
  auto& registry = zsad::cli::command_registry();
  auto it = registry.find(name);
  if (it == registry.end()) {
    std::cerr << "zsad: unknown command '" << name << "'\n";
    print_usage(std::cerr);
    return zsad::kExitUsage;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    return it->second.run(args);
  } catch (const zsad::cli::HelpRequested& h) {
    std::cout << h.what();
    return zsad::kExitSuccess;
  } catch (const zsad::UsageError& e) {
    std::cerr << "zsad " << name << ": " << e.what() << "\n(see `zsad " << name << " --help`)\n";
    return zsad::kExitUsage;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    // LibTorch messages carry a multi-line C++ backtrace; the user gets the first line.
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);
    std::cerr << "zsad " << name << ": error: " << msg << "\n";
    return zsad::kExitError;
  }
}
