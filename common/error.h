#pragma once
// Errors that reach the user. Every boundary (file readers, config, CLI) throws zsad::Error
// with the file/key/value context already in the message; main() prints it on one line.
#include <stdexcept>
#include <string>

namespace zsad {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Wrong command-line usage: main() prints the message plus usage and exits with kExitUsage.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

}  // namespace zsad
