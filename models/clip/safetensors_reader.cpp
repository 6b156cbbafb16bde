// Dependency-free safetensors reader: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the raw
// little-endian row-major data; offsets are relative to the end of the header.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>

#include "common/error.h"
#include "models/clip/weights.h"
#include "models/clip/weights_internal.h"

namespace zsad::models {
namespace {

using weights_detail::fail;

constexpr unsigned long long kMaxHeader = 100ull << 20;  // safetensors itself caps the header at 100 MB

bool safetensors_dtype(const std::string& s, at::ScalarType* out) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"F32", at::kFloat}, {"F64", at::kDouble},
      {"I64", at::kLong}, {"I32", at::kInt},       {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},  {"BOOL", at::kBool},
  };
  for (const auto& t : kTypes) {
    if (s == t.first) {
      *out = t.second;
      return true;
    }
  }
  return false;
}

}  // namespace

StateDict read_safetensors(const std::string& path) {
  const unsigned long long size = weights_detail::file_size_checked(path);
  if (size == 0) fail(path, "empty file (expected safetensors)");
  if (size < 8) fail(path, "truncated safetensors file (" + std::to_string(size) + " bytes)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  unsigned long long n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > size - 8) {
    fail(path, "truncated safetensors file: its header claims " + std::to_string(n) + " bytes but the file has " +
                   std::to_string(size) + " bytes");
  }
  if (n > kMaxHeader) fail(path, "safetensors header of " + std::to_string(n) + " bytes exceeds 100 MB");
  std::string header(static_cast<size_t>(n), '\0');
  in.read(&header[0], static_cast<std::streamsize>(n));
  if (!in) fail(path, "cannot read the safetensors header");

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    fail(path, "safetensors header is not valid JSON (" + weights_detail::one_line(e) + ")");
  }
  if (!j.is_object()) fail(path, "safetensors header is not a JSON object");

  const unsigned long long data_start = 8 + n;
  const unsigned long long data_size = size - data_start;
  StateDict out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const nlohmann::json& e = it.value();
    auto bad = [&](const std::string& what) { fail(path, "tensor '" + name + "': " + what); };
    if (!e.is_object()) bad("header entry is not an object");
    if (!e.contains("dtype") || !e["dtype"].is_string()) bad("missing dtype");
    if (!e.contains("shape") || !e["shape"].is_array()) bad("missing shape");
    if (!e.contains("data_offsets") || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2) {
      bad("missing data_offsets [begin, end]");
    }
    at::ScalarType dtype;
    const std::string dt = e["dtype"].get<std::string>();
    if (!safetensors_dtype(dt, &dtype)) bad("unsupported dtype '" + dt + "'");
    std::vector<int64_t> shape;
    unsigned long long numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<long long>() >= 0)) bad("shape entries must be non-negative integers");
      const unsigned long long v = d.get<unsigned long long>();
      if (v > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max()) ||
          (v != 0 && numel > std::numeric_limits<unsigned long long>::max() / 2 / v)) {
        bad("shape is too large");
      }
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    for (const auto& o : e["data_offsets"]) {
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<long long>() >= 0)) bad("data_offsets must be non-negative integers");
    }
    const unsigned long long begin = e["data_offsets"][0].get<unsigned long long>();
    const unsigned long long end = e["data_offsets"][1].get<unsigned long long>();
    if (end < begin) bad("data_offsets end < begin");
    const unsigned long long nbytes = numel * c10::elementSize(dtype);
    if (end - begin != nbytes) {
      bad("data_offsets span " + std::to_string(end - begin) + " bytes but shape and dtype need " + std::to_string(nbytes));
    }
    if (end > data_size) {
      fail(path, "truncated safetensors file: tensor '" + name + "' ends at byte " + std::to_string(data_start + end) +
                     " but the file has " + std::to_string(size) + " bytes");
    }
    // BOOL is read as bytes and normalised, so a byte other than 0/1 cannot make an invalid bool.
    const at::ScalarType read_as = dtype == at::kBool ? at::kByte : dtype;
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(read_as).device(at::kCPU));
    if (nbytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(nbytes));
      if (!in) fail(path, "cannot read the data of tensor '" + name + "'");
    }
    if (dtype == at::kBool) t = t.ne(0);
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace zsad::models
