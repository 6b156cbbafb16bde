// Weight-file format detection, dispatch and small state-dict helpers.
// The readers themselves: torch_save_reader.cpp, torchscript_reader.cpp, safetensors_reader.cpp.
#include "models/clip/weights.h"

#include <caffe2/serialize/inline_container.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/error.h"
#include "models/clip/weights_internal.h"

namespace zsad::models {

namespace weights_detail {

std::string one_line(const std::exception& e) {
  std::string msg;
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) {
    msg = ce->msg();
  } else {
    msg = e.what();
  }
  // c10::Error messages may start with a newline and carry "Exception raised from ..." /
  // backtrace lines; keep the first non-empty line.
  size_t begin = msg.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "unknown error";
  size_t end = msg.find_first_of(std::string("\r\n\0", 3), begin);  // some LibTorch messages embed a NUL
  std::string line = msg.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
  // CAFFE_ENFORCE messages start with "[enforce fail at file.cc:129] . "; keep the message.
  if (line.rfind("[enforce fail at ", 0) == 0) {
    const size_t close = line.find("] ");
    if (close != std::string::npos) {
      line = line.substr(close + 2);
      if (line.rfind(". ", 0) == 0) line = line.substr(2);
    }
  }
  return line.empty() ? "unknown error" : line;
}

void fail(const std::string& path, const std::string& what) { throw zsad::Error(path + ": " + what); }

unsigned long long file_size_checked(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, std::string("cannot open weight file (") + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory, expected a CLIP weight file");
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file, expected a CLIP weight file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open weight file for reading (") + std::strerror(errno) + ")");
  return static_cast<unsigned long long>(st.st_size);
}

}  // namespace weights_detail

namespace {

using weights_detail::fail;

constexpr const char* kExpected = "expected TorchScript archive, torch.save zip or safetensors";

// Python's legacy (pre-1.6, non-zip) torch.save stream starts with PROTO 2 and the LONG1 magic
// number 0x1950a86a20f9469cfc6c.
const unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                      0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

std::string read_head(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open weight file for reading");
  std::string buf(n, '\0');
  in.read(&buf[0], static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(in.gcount()));
  return buf;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

namespace weights_detail {

bool is_legacy_torch_save(const std::string& head) {
  return head.size() >= sizeof(kLegacyMagic) && std::memcmp(head.data(), kLegacyMagic, sizeof(kLegacyMagic)) == 0;
}

std::string legacy_message() {
  return "legacy (non-zip) torch.save format is not supported; re-save it with the zip format in Python: "
         "torch.save(torch.load(old, map_location='cpu'), new) (the default since PyTorch 1.6)";
}

}  // namespace weights_detail

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kTorchScript: return "torchscript";
    case WeightFormat::kTorchSave: return "torch.save";
    case WeightFormat::kSafetensors: return "safetensors";
  }
  return "unknown";
}

WeightFormat detect_weight_format(const std::string& path) {
  const unsigned long long size = weights_detail::file_size_checked(path);
  if (size == 0) fail(path, std::string("empty file (") + kExpected + ")");
  const std::string head = read_head(path, 64);

  if (starts_with(head, std::string("PK\x03\x04", 4))) {
    std::vector<std::string> records;
    try {
      caffe2::serialize::PyTorchStreamReader reader(path);
      records = reader.getAllRecords();
    } catch (const std::exception& e) {
      fail(path, "truncated or corrupt zip archive, or not a PyTorch archive (" + weights_detail::one_line(e) + ")");
    }
    bool has_data_pkl = false;
    for (const auto& r : records) {
      if (r == "constants.pkl" || starts_with(r, "code/")) return WeightFormat::kTorchScript;
      if (r == "data.pkl") has_data_pkl = true;
    }
    if (has_data_pkl) return WeightFormat::kTorchSave;
    fail(path, std::string("zip archive without data.pkl: not a CLIP weight file (") + kExpected + ")");
  }
  if (weights_detail::is_legacy_torch_save(head)) fail(path, weights_detail::legacy_message());

  if (head.size() >= 10 && head[8] == '{') {
    unsigned long long n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(head[static_cast<size_t>(i)]);
    if (n >= 2) {
      if (n > size - 8) {
        fail(path, "truncated safetensors file: its header claims " + std::to_string(n) + " bytes but the file has " +
                       std::to_string(size) + " bytes");
      }
      return WeightFormat::kSafetensors;
    }
  }
  if (size < 8) fail(path, "truncated file of " + std::to_string(size) + " bytes (" + kExpected + ")");
  fail(path, std::string("not a CLIP weight file (") + kExpected + ")");
}

StateDict read_weights(const std::string& path) {
  StateDict sd;
  switch (detect_weight_format(path)) {
    case WeightFormat::kTorchScript: sd = read_torchscript_weights(path); break;
    case WeightFormat::kTorchSave: sd = read_torch_save(path); break;
    case WeightFormat::kSafetensors: sd = read_safetensors(path); break;
  }
  if (sd.empty()) fail(path, "contains no tensors");
  return sd;
}

StateDict strip_prefix(const StateDict& sd, const std::string& prefix) {
  StateDict out;
  for (auto it = sd.lower_bound(prefix); it != sd.end() && starts_with(it->first, prefix); ++it) {
    out.emplace(it->first.substr(prefix.size()), it->second);
  }
  return out;
}

StateDict unwrap_checkpoint(const StateDict& sd) {
  // open_clip's load_state_dict: take checkpoint["state_dict"] when present, then drop a
  // DDP "module." prefix when every key has it.
  StateDict out = strip_prefix(sd, "state_dict.");
  if (out.empty()) out = sd;
  StateDict inner = strip_prefix(out, "module.");
  if (!inner.empty() && inner.size() == out.size()) out = std::move(inner);
  return out;
}

}  // namespace zsad::models
