#pragma once
// Subcommands of the `zsad` executable register themselves here; main() dispatches.
// Each launch/cli/cmd_*.cpp defines one command with ZSAD_COMMAND.
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace zsad::cli {

using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string name;
  std::string synopsis;  // one line, shown by `zsad --help`
  CommandFn run;
};

std::map<std::string, Command>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, const std::string& synopsis, CommandFn fn) {
    command_registry()[name] = Command{name, synopsis, std::move(fn)};
  }
};

#define ZSAD_COMMAND_CONCAT2(a, b) a##b
#define ZSAD_COMMAND_CONCAT(a, b) ZSAD_COMMAND_CONCAT2(a, b)
#define ZSAD_COMMAND(name, synopsis, fn) \
  static ::zsad::cli::CommandRegistrar ZSAD_COMMAND_CONCAT(zsad_command_, __LINE__)(name, synopsis, fn)

}  // namespace zsad::cli
