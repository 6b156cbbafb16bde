#pragma once
// Internals shared by the weight readers (models/clip/weights*.cpp, *_reader.cpp). Not a public API.
#include <exception>
#include <string>

namespace zsad::models::weights_detail {

// The first line of an exception's message, without LibTorch's backtrace / context dump
// (c10::Error's what() spans many lines; users get one line).
std::string one_line(const std::exception& e);

// Throws zsad::Error("<path>: <what>").
[[noreturn]] void fail(const std::string& path, const std::string& what);

// Size of a regular file; throws naming the path when it is missing, a directory or unreadable.
unsigned long long file_size_checked(const std::string& path);

// Python's legacy (pre-1.6, non-zip) torch.save stream: PROTO 2 + LONG1 magic number.
bool is_legacy_torch_save(const std::string& head);
std::string legacy_message();

}  // namespace zsad::models::weights_detail
