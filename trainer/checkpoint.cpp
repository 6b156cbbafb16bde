#include "trainer/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fcntl.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <zlib.h>

#include "common/error.h"
#include "common/h5.h"

namespace zsad {

namespace fs = std::filesystem;

int64_t Checkpoint::get_int(const std::string& key) const {
  auto it = ints.find(key);
  if (it == ints.end()) throw Error("checkpoint: attribute '" + key + "' is missing");
  return it->second;
}

const at::Tensor& Checkpoint::get_tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error("checkpoint: tensor '" + name + "' is missing");
  return it->second;
}

namespace {

// dtype codes stored per dataset (attribute "dtype") so that a tensor comes back with its exact
// type even when HDF5 would convert it (bool is stored as uint8).
const char* dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return nullptr;
  }
}

at::ScalarType dtype_from_code(const std::string& code, const std::string& name) {
  if (code == "float32") return at::kFloat;
  if (code == "float64") return at::kDouble;
  if (code == "int64") return at::kLong;
  if (code == "int32") return at::kInt;
  if (code == "uint8") return at::kByte;
  if (code == "bool") return at::kBool;
  throw Error("checkpoint tensor '" + name + "': unknown dtype '" + code + "'");
}

uLong crc_bytes(uLong crc, const void* p, size_t n) {
  const auto* b = static_cast<const Bytef*>(p);
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, b, chunk);
    b += chunk;
    n -= chunk;
  }
  return crc;
}

uLong crc_string(uLong crc, const std::string& s) { return crc_bytes(crc, s.data(), s.size() + 1); }

uint32_t checksum(const Checkpoint& ck) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [name, t] : ck.tensors) {  // std::map: sorted, the same order on load
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    crc = crc_string(crc, name);
    crc = crc_string(crc, dtype_code(c.scalar_type()));
    for (int64_t d : c.sizes()) crc = crc_bytes(crc, &d, sizeof d);
    crc = crc_bytes(crc, c.data_ptr(), c.numel() * c.element_size());
  }
  for (const auto& [k, v] : ck.ints) {
    crc = crc_string(crc, k);
    crc = crc_bytes(crc, &v, sizeof v);
  }
  for (const auto& [k, v] : ck.strings) {
    crc = crc_string(crc, k);
    crc = crc_string(crc, v);
  }
  return static_cast<uint32_t>(crc);
}

std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t c = s.find(',', pos);
    out.push_back(s.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw Error("checkpoint: cannot open '" + path + "' for fsync");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw Error("checkpoint: fsync of '" + path + "' failed");
}

}  // namespace

void write_checkpoint(const std::string& path, const Checkpoint& ck) {
  const std::string tmp = path + ".tmp";
  {
    h5::File f(tmp, h5::File::Mode::kTruncate);
    for (const auto& [name, t] : ck.tensors) {
      at::Tensor c = t.detach().to(at::kCPU).contiguous();
      const char* code = dtype_code(c.scalar_type());
      if (!code) throw Error("checkpoint tensor '" + name + "': dtype " + std::string(c.dtype().name()) + " is not supported");
      std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
      const bool scalar = shape.empty();
      if (scalar) shape = {1};
      switch (c.scalar_type()) {
        case at::kFloat: f.write(name, c.data_ptr<float>(), shape); break;
        case at::kDouble: f.write(name, c.data_ptr<double>(), shape); break;
        case at::kLong: f.write(name, c.data_ptr<int64_t>(), shape); break;
        case at::kInt: f.write(name, c.data_ptr<int32_t>(), shape); break;
        case at::kByte: f.write(name, c.data_ptr<uint8_t>(), shape); break;
        case at::kBool: {
          at::Tensor u = c.to(at::kByte);
          f.write(name, u.data_ptr<uint8_t>(), shape);
          break;
        }
        default: break;
      }
      f.set_attr(name, "dtype", std::string(code));
      f.set_attr(name, "ndim", static_cast<int64_t>(scalar ? 0 : shape.size()));
    }
    std::string int_keys, string_keys;
    for (const auto& [k, v] : ck.ints) {
      f.set_attr("/", k, v);
      int_keys += (int_keys.empty() ? "" : ",") + k;
    }
    for (const auto& [k, v] : ck.strings) {
      f.set_attr("/", k, v);
      string_keys += (string_keys.empty() ? "" : ",") + k;
    }
    f.set_attr("/", "int_keys", int_keys);
    f.set_attr("/", "string_keys", string_keys);
    f.set_attr("/", "format", std::string("zsad-checkpoint-1"));
    f.set_attr("/", "checksum", static_cast<int64_t>(checksum(ck)));
    f.flush();
  }
  fsync_path(tmp, false);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error("checkpoint: rename '" + tmp + "' -> '" + path + "' failed: " + ec.message());
  fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

Checkpoint read_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error("checkpoint '" + path + "' does not exist");
  if (std::filesystem::is_directory(path, ec))
    throw Error("checkpoint '" + path + "' is a directory; pass a checkpoint file (e.g. <run dir>/checkpoints/ckpt-<step>.h5)");
  Checkpoint ck;
  int64_t stored = 0;
  try {
    h5::File f(path, h5::File::Mode::kRead);
    if (!f.has_attr("/", "format") || f.attr_string("/", "format") != "zsad-checkpoint-1") {
      throw Error("not a zsad checkpoint (root attribute format != zsad-checkpoint-1)");
    }
    stored = f.attr_int("/", "checksum");
    // Walk groups recursively; every dataset is a tensor.
    std::vector<std::string> todo{"/"};
    while (!todo.empty()) {
      std::string g = todo.back();
      todo.pop_back();
      for (const auto& child : f.children(g)) {
        std::string full = (g == "/" ? "" : g + "/") + child;
        if (f.is_group(full)) {
          todo.push_back(full);
          continue;
        }
        at::ScalarType dt = dtype_from_code(f.attr_string(full, "dtype"), full);
        std::vector<int64_t> shape = f.shape(full);
        if (f.attr_int(full, "ndim") == 0) shape.clear();
        at::Tensor t;
        switch (dt) {
          case at::kFloat: {
            auto v = f.read_float(full);
            t = at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
            break;
          }
          case at::kDouble: {
            auto v = f.read_double(full);
            t = at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kDouble).clone();
            break;
          }
          case at::kLong:
          case at::kInt: {
            auto v = f.read_int64(full);
            t = at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kLong).clone().to(dt);
            break;
          }
          case at::kByte:
          case at::kBool: {
            auto v = f.read_uint8(full);
            t = at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kByte).clone().to(dt);
            break;
          }
          default: break;
        }
        ck.tensors[full] = t.reshape(shape);
      }
    }
    for (const auto& k : split_keys(f.attr_string("/", "int_keys"))) ck.ints[k] = f.attr_int("/", k);
    for (const auto& k : split_keys(f.attr_string("/", "string_keys"))) ck.strings[k] = f.attr_string("/", k);
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + path + "' is unreadable (truncated or corrupt?): " + e.what());
  }
  uint32_t actual = checksum(ck);
  if (static_cast<uint32_t>(stored) != actual) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "checksum mismatch (stored %08x, computed %08x): the file is corrupt",
                  static_cast<uint32_t>(stored), actual);
    throw Error("checkpoint '" + path + "': " + msg);
  }
  return ck;
}

CheckpointDir::CheckpointDir(std::string dir, int keep_last) : dir_(std::move(dir)), keep_(keep_last) {
  if (keep_ < 2) throw Error("checkpoint keep_last " + std::to_string(keep_) + ": expected >= 2 (the newest may be half-written when a job dies)");
}

std::string CheckpointDir::path_for(int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof name, "ckpt-%09lld.h5", static_cast<long long>(step));
  return (fs::path(dir_) / name).string();
}

std::vector<std::string> CheckpointDir::list() const {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string n = e.path().filename().string();
    long long step = 0;
    char tail[8] = {0};
    if (n.size() == 17 && std::sscanf(n.c_str(), "ckpt-%9lld.%2s", &step, tail) == 2 && std::string(tail) == "h5") {
      found.emplace_back(step, e.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string CheckpointDir::save(const Checkpoint& ck) {
  fs::create_directories(dir_);
  std::string path = path_for(ck.get_int("step"));
  write_checkpoint(path, ck);
  auto all = list();
  for (size_t i = 0; i + keep_ < all.size(); ++i) fs::remove(all[i]);
  return path;
}

std::optional<Checkpoint> CheckpointDir::load_latest(const std::string& config_digest, std::string* loaded_path) const {
  auto all = list();
  if (all.empty()) return std::nullopt;
  std::string failures;
  for (size_t i = all.size(); i-- > 0;) {
    Checkpoint ck;
    try {
      ck = read_checkpoint(all[i]);
    } catch (const Error& e) {
      std::fprintf(stderr, "[zsad] %s; %s\n", e.what(),
                   i > 0 ? ("falling back to " + all[i - 1]).c_str() : "no older checkpoint left");
      failures += std::string(failures.empty() ? "" : "; ") + e.what();
      continue;
    }
    if (!config_digest.empty()) {
      auto it = ck.strings.find("config_digest");
      std::string have = it == ck.strings.end() ? "<none>" : it->second;
      if (have != config_digest) {
        throw Error("checkpoint '" + all[i] + "' was written by a different configuration (config digest " + have +
                    ", this run " + config_digest + "); use a new run directory or the original configuration");
      }
    }
    if (loaded_path) *loaded_path = all[i];
    return ck;
  }
  throw Error("no usable checkpoint in '" + dir_ + "': " + failures);
}

}  // namespace zsad
