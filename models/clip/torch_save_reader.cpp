// A small, stand-alone reader for Python's torch.save zip format (and the data.pkl of TorchScript
// archives). LibTorch 1.13's pickle_load cannot read OrderedDict state dicts or one-element lists
// (shared/specs/toolchain.md §5), so this file has its own unpickler. It never executes anything:
// GLOBALs are just names; the few callables torch.save uses are interpreted here, everything
// else becomes an opaque object. Storages are read with LibTorch's PyTorchStreamReader and
// always land on the CPU, whatever their location tag ("cpu", "cuda:0", ...).
#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "models/clip/weights.h"
#include "models/clip/weights_internal.h"

namespace zsad::models {
namespace {

using weights_detail::fail;

struct PyObj;
using Obj = std::shared_ptr<PyObj>;

enum class Kind { kNone, kBool, kInt, kFloat, kStr, kBytes, kTuple, kList, kDict, kSet, kGlobal, kTensor, kStorage, kObject };

struct PyObj {
  Kind kind = Kind::kNone;
  int64_t i = 0;              // kBool, kInt
  bool big = false;           // kInt that did not fit into int64
  double f = 0.0;             // kFloat
  std::string s;              // kStr/kBytes; kGlobal/kObject: "module.name"
  std::vector<Obj> items;     // tuple/list/set elements, dict keys
  std::vector<Obj> values;    // dict values
  std::unordered_map<std::string, size_t> str_keys;  // dict: index of string keys
  at::Tensor tensor;          // kTensor
  c10::Storage storage;       // kStorage
  at::ScalarType dtype = at::kFloat;  // kStorage
  int64_t numel = 0;          // kStorage (elements)
  std::string key;            // kStorage: record name below data/
  Obj state;                  // kObject: argument of BUILD
};

Obj make(Kind k) {
  auto o = std::make_shared<PyObj>();
  o->kind = k;
  return o;
}
Obj make_int(int64_t v) {
  auto o = make(Kind::kInt);
  o->i = v;
  return o;
}
Obj make_str(Kind k, std::string s) {
  auto o = make(k);
  o->s = std::move(s);
  return o;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kStr: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kSet: return "set";
    case Kind::kGlobal: return "global";
    case Kind::kTensor: return "tensor";
    case Kind::kStorage: return "storage";
    case Kind::kObject: return "object";
  }
  return "?";
}

bool dict_key_equal(const PyObj& a, const PyObj& b) {
  if (a.kind != b.kind) {
    // Python: 1 == True; keep it simple and treat bool/int alike.
    bool ai = a.kind == Kind::kInt || a.kind == Kind::kBool;
    bool bi = b.kind == Kind::kInt || b.kind == Kind::kBool;
    return ai && bi && a.i == b.i && !a.big && !b.big;
  }
  switch (a.kind) {
    case Kind::kNone: return true;
    case Kind::kBool:
    case Kind::kInt: return a.i == b.i && !a.big && !b.big;
    case Kind::kFloat: return a.f == b.f;
    case Kind::kStr:
    case Kind::kBytes:
    case Kind::kGlobal: return a.s == b.s;
    default: return &a == &b;
  }
}

void dict_set(PyObj& d, Obj k, Obj v) {
  if (k->kind == Kind::kStr) {
    auto it = d.str_keys.find(k->s);
    if (it != d.str_keys.end()) {
      d.values[it->second] = std::move(v);
      return;
    }
    d.str_keys.emplace(k->s, d.items.size());
  } else {
    for (size_t j = 0; j < d.items.size(); ++j) {
      if (d.items[j]->kind != Kind::kStr && dict_key_equal(*d.items[j], *k)) {
        d.values[j] = std::move(v);
        return;
      }
    }
  }
  d.items.push_back(std::move(k));
  d.values.push_back(std::move(v));
}

bool storage_dtype(const std::string& name, at::ScalarType* out) {
  static const std::unordered_map<std::string, at::ScalarType> kTypes = {
      {"torch.FloatStorage", at::kFloat},          {"torch.HalfStorage", at::kHalf},
      {"torch.DoubleStorage", at::kDouble},        {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},            {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},          {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},            {"torch.BoolStorage", at::kBool},
      {"torch.ComplexFloatStorage", at::kComplexFloat}, {"torch.ComplexDoubleStorage", at::kComplexDouble},
      {"torch.UntypedStorage", at::kByte},         {"torch.storage.UntypedStorage", at::kByte},
      {"torch.cuda.FloatStorage", at::kFloat},     {"torch.cuda.HalfStorage", at::kHalf},
      {"torch.cuda.DoubleStorage", at::kDouble},   {"torch.cuda.BFloat16Storage", at::kBFloat16},
      {"torch.cuda.LongStorage", at::kLong},       {"torch.cuda.IntStorage", at::kInt},
      {"torch.cuda.ByteStorage", at::kByte},       {"torch.cuda.BoolStorage", at::kBool},
  };
  auto it = kTypes.find(name);
  if (it == kTypes.end()) return false;
  *out = it->second;
  return true;
}

// Reads storages ("data/<key>" records) once each; tensors that share a storage share memory.
class StorageTable {
 public:
  StorageTable(const std::string& path, caffe2::serialize::PyTorchStreamReader& reader, std::string dir)
      : path_(path), reader_(reader), dir_(std::move(dir)) {}

  Obj load(const std::string& key, at::ScalarType dtype, int64_t numel) {
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      if (it->second->dtype != dtype) {
        fail(path_, "storage '" + dir_ + key + "' is used with two dtypes (" + std::string(c10::toString(it->second->dtype)) +
                        " and " + c10::toString(dtype) + "), which this reader does not support");
      }
      return it->second;
    }
    if (numel < 0) fail(path_, "storage '" + dir_ + key + "' has a negative size");
    const std::string record = dir_ + key;
    if (!reader_.hasRecord(record)) fail(path_, "archive has no record '" + record + "' referenced by its pickle");
    at::DataPtr ptr;
    size_t nbytes = 0;
    std::tie(ptr, nbytes) = reader_.getRecord(record);
    const size_t need = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (nbytes < need) {
      fail(path_, "record '" + record + "' holds " + std::to_string(nbytes) + " bytes, but its storage needs " +
                      std::to_string(need) + " (" + std::to_string(numel) + " x " + c10::toString(dtype) + ")");
    }
    auto o = make(Kind::kStorage);
    o->storage = c10::Storage(c10::Storage::use_byte_size_t(), need, std::move(ptr), /*allocator=*/nullptr,
                              /*resizable=*/false);
    o->dtype = dtype;
    o->numel = numel;
    o->key = record;
    cache_.emplace(key, o);
    return o;
  }

 private:
  std::string path_;
  caffe2::serialize::PyTorchStreamReader& reader_;
  std::string dir_;
  std::unordered_map<std::string, Obj> cache_;
};

class Unpickler {
 public:
  Unpickler(std::string path, std::string record, const uint8_t* data, size_t size, StorageTable& storages)
      : path_(std::move(path)), record_(std::move(record)), data_(data), size_(size), storages_(storages) {}

  Obj load() {
    while (true) {
      const size_t op_pos = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t v = u8();
          if (v > 5) error(op_pos, "unsupported pickle protocol " + std::to_string(v));
          break;
        }
        case 0x95: skip(8); break;  // FRAME (protocol 4): the frame length is irrelevant here
        case '.':                   // STOP
          if (stack_.empty()) error(op_pos, "STOP with an empty stack");
          return stack_.back();
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '}': push(make(Kind::kDict)); break;         // EMPTY_DICT
        case ']': push(make(Kind::kList)); break;         // EMPTY_LIST
        case ')': push(make(Kind::kTuple)); break;        // EMPTY_TUPLE
        case 0x8f: push(make(Kind::kSet)); break;         // EMPTY_SET
        case 'N': push(make(Kind::kNone)); break;         // NONE
        case 0x88: push_bool(true); break;                // NEWTRUE
        case 0x89: push_bool(false); break;               // NEWFALSE
        case 't': {                                       // TUPLE
          auto o = make(Kind::kTuple);
          o->items = pop_mark(op_pos);
          push(o);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                // TUPLE1/2/3
          const size_t n = static_cast<size_t>(op - 0x84);
          need_stack(op_pos, n);
          auto o = make(Kind::kTuple);
          o->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(o);
          break;
        }
        case 'l': {                                       // LIST
          auto o = make(Kind::kList);
          o->items = pop_mark(op_pos);
          push(o);
          break;
        }
        case 'd': {                                       // DICT
          auto items = pop_mark(op_pos);
          if (items.size() % 2) error(op_pos, "DICT with an odd number of items");
          auto o = make(Kind::kDict);
          for (size_t j = 0; j < items.size(); j += 2) dict_set(*o, items[j], items[j + 1]);
          push(o);
          break;
        }
        case 0x91: {                                      // FROZENSET
          auto o = make(Kind::kSet);
          o->items = pop_mark(op_pos);
          push(o);
          break;
        }
        case 's': {                                       // SETITEM
          need_stack(op_pos, 3);
          Obj v = pop(op_pos);
          Obj k = pop(op_pos);
          Obj& d = stack_.back();
          if (d->kind == Kind::kDict) dict_set(*d, std::move(k), std::move(v));
          break;
        }
        case 'u': {                                       // SETITEMS
          auto items = pop_mark(op_pos);
          if (items.size() % 2) error(op_pos, "SETITEMS with an odd number of items");
          need_stack(op_pos, 1);
          Obj& d = stack_.back();
          if (d->kind == Kind::kDict) {
            for (size_t j = 0; j < items.size(); j += 2) dict_set(*d, items[j], items[j + 1]);
          }
          break;
        }
        case 'a': {                                       // APPEND
          need_stack(op_pos, 2);
          Obj v = pop(op_pos);
          Obj& l = stack_.back();
          if (l->kind == Kind::kList || l->kind == Kind::kSet) l->items.push_back(std::move(v));
          break;
        }
        case 'e': case 0x90: {                            // APPENDS, ADDITEMS
          auto items = pop_mark(op_pos);
          need_stack(op_pos, 1);
          Obj& l = stack_.back();
          if (l->kind == Kind::kList || l->kind == Kind::kSet) l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case '0':                                         // POP
          if (!stack_.empty() && (marks_.empty() || marks_.back() < stack_.size())) {
            stack_.pop_back();
          } else {
            pop_mark(op_pos);
          }
          break;
        case '1': pop_mark(op_pos); break;                // POP_MARK
        case '2': need_stack(op_pos, 1); push(stack_.back()); break;  // DUP
        case 'q': memo_put(op_pos, u8()); break;          // BINPUT
        case 'r': memo_put(op_pos, u32()); break;         // LONG_BINPUT
        case 0x94: memo_put(op_pos, memo_.size()); break; // MEMOIZE
        case 'p': memo_put(op_pos, parse_uint(op_pos, line())); break;  // PUT
        case 'h': push(memo_get(op_pos, u8())); break;    // BINGET
        case 'j': push(memo_get(op_pos, u32())); break;   // LONG_BINGET
        case 'g': push(memo_get(op_pos, parse_uint(op_pos, line()))); break;  // GET
        case 'J': push(make_int(static_cast<int32_t>(u32()))); break;  // BININT
        case 'K': push(make_int(u8())); break;            // BININT1
        case 'M': {                                       // BININT2
          uint32_t lo = u8();
          uint32_t hi = u8();
          push(make_int(static_cast<int64_t>(lo | (hi << 8))));
          break;
        }
        case 0x8a: push(long_n(u8())); break;     // LONG1
        case 0x8b: {                                      // LONG4
          int32_t n = static_cast<int32_t>(u32());
          if (n < 0) error(op_pos, "LONG4 with a negative length");
          push(long_n(static_cast<size_t>(n)));
          break;
        }
        case 'I': {                                       // INT (text; "01"/"00" are booleans)
          std::string s = line();
          if (s == "01" || s == "00") {
            push_bool(s == "01");
          } else {
            push(make_int(parse_int(op_pos, s)));
          }
          break;
        }
        case 'L': {                                       // LONG (text)
          std::string s = line();
          if (!s.empty() && s.back() == 'L') s.pop_back();
          push(make_int(parse_int(op_pos, s)));
          break;
        }
        case 'G': {                                       // BINFLOAT (big-endian double)
          const uint8_t* p = bytes(8);
          uint64_t bits = 0;
          for (int j = 0; j < 8; ++j) bits = (bits << 8) | p[j];
          auto o = make(Kind::kFloat);
          std::memcpy(&o->f, &bits, sizeof(double));
          push(o);
          break;
        }
        case 'F': {                                       // FLOAT (text)
          auto o = make(Kind::kFloat);
          o->f = std::strtod(line().c_str(), nullptr);
          push(o);
          break;
        }
        case 0x8c: push(str_n(Kind::kStr, u8())); break;  // SHORT_BINUNICODE
        case 'X': push(str_n(Kind::kStr, u32())); break;  // BINUNICODE
        case 0x8d: push(str_n(Kind::kStr, u64())); break; // BINUNICODE8
        case 'U': push(str_n(Kind::kStr, u8())); break;   // SHORT_BINSTRING (py2 str)
        case 'T': push(str_n(Kind::kStr, u32())); break;  // BINSTRING
        case 'V': push(make_str(Kind::kStr, line())); break;  // UNICODE (raw-unicode-escape; ASCII here)
        case 'S': {                                       // STRING (quoted repr)
          std::string s = line();
          if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"')) s = s.substr(1, s.size() - 2);
          push(make_str(Kind::kStr, s));
          break;
        }
        case 'C': push(str_n(Kind::kBytes, u8())); break;   // SHORT_BINBYTES
        case 'B': push(str_n(Kind::kBytes, u32())); break;  // BINBYTES
        case 0x8e: case 0x96: push(str_n(Kind::kBytes, u64())); break;  // BINBYTES8, BYTEARRAY8
        case 'c': {                                       // GLOBAL
          std::string module = line();
          std::string name = line();
          push(make_str(Kind::kGlobal, module + "." + name));
          break;
        }
        case 0x93: {                                      // STACK_GLOBAL
          need_stack(op_pos, 2);
          Obj name = pop(op_pos);
          Obj module = pop(op_pos);
          if (name->kind != Kind::kStr || module->kind != Kind::kStr) error(op_pos, "STACK_GLOBAL needs two strings");
          push(make_str(Kind::kGlobal, module->s + "." + name->s));
          break;
        }
        case 'R': {                                       // REDUCE
          need_stack(op_pos, 2);
          Obj args = pop(op_pos);
          Obj fn = pop(op_pos);
          push(reduce(op_pos, fn, args));
          break;
        }
        case 0x81: {                                      // NEWOBJ
          need_stack(op_pos, 2);
          Obj args = pop(op_pos);
          Obj cls = pop(op_pos);
          push(reduce(op_pos, cls, args));
          break;
        }
        case 0x92: {                                      // NEWOBJ_EX
          need_stack(op_pos, 3);
          pop(op_pos);  // kwargs
          Obj args = pop(op_pos);
          Obj cls = pop(op_pos);
          push(reduce(op_pos, cls, args));
          break;
        }
        case 'b': {                                       // BUILD
          need_stack(op_pos, 2);
          Obj state = pop(op_pos);
          Obj& target = stack_.back();
          // Objects (e.g. TorchScript modules) keep their attribute dict; BUILD on a dict
          // (OrderedDict's _metadata) or tensor is an attribute update that does not matter here.
          if (target->kind == Kind::kObject) target->state = std::move(state);
          break;
        }
        case 'Q': {                                       // BINPERSID
          need_stack(op_pos, 1);
          Obj pid = pop(op_pos);
          push(persistent_load(op_pos, pid));
          break;
        }
        case 'P': error(op_pos, "text persistent ids (PERSID) are not used by torch.save; unsupported");
        default: {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "0x%02x", op);
          error(op_pos, std::string("unsupported pickle opcode ") + hex);
        }
      }
    }
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    fail(path_, what + " in " + record_ + " at byte " + std::to_string(at));
  }

  const uint8_t* bytes(size_t n) {
    if (n > size_ - pos_) error(pos_, "truncated pickle (needs " + std::to_string(n) + " more bytes)");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  void skip(size_t n) { bytes(n); }
  uint8_t u8() { return *bytes(1); }
  uint32_t u32() {
    const uint8_t* p = bytes(4);
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
  }
  uint64_t u64() {
    const uint8_t* p = bytes(8);
    uint64_t v = 0;
    for (int j = 7; j >= 0; --j) v = (v << 8) | p[j];
    return v;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ >= size_) error(start, "truncated pickle (unterminated text argument)");
    std::string s(reinterpret_cast<const char*>(data_ + start), pos_ - start);
    ++pos_;
    return s;
  }
  int64_t parse_int(size_t at, const std::string& s) const {
    try {
      size_t used = 0;
      long long v = std::stoll(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception&) {
      error(at, "bad integer '" + s + "'");
    }
  }
  size_t parse_uint(size_t at, const std::string& s) const {
    int64_t v = parse_int(at, s);
    if (v < 0) error(at, "negative memo index");
    return static_cast<size_t>(v);
  }
  Obj str_n(Kind k, uint64_t n) {
    if (n > size_ - pos_) error(pos_, "truncated pickle (string of " + std::to_string(n) + " bytes)");
    const uint8_t* p = bytes(static_cast<size_t>(n));
    return make_str(k, std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)));
  }
  Obj long_n(size_t n) {
    const uint8_t* p = bytes(n);
    auto o = make(Kind::kInt);
    if (n == 0) return o;
    if (n > 8) {
      // Only 0 / -1 sign extension beyond 8 bytes fits into int64.
      const uint8_t fill = (p[n - 1] & 0x80) ? 0xff : 0x00;
      for (size_t j = 8; j < n; ++j) {
        if (p[j] != fill) {
          o->big = true;
          return o;
        }
      }
      if (((p[7] & 0x80) ? 0xff : 0x00) != fill) {
        o->big = true;
        return o;
      }
      n = 8;
    }
    uint64_t v = 0;
    for (size_t j = n; j-- > 0;) v = (v << 8) | p[j];
    if (n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    o->i = static_cast<int64_t>(v);
    return o;
  }
  void push(Obj o) { stack_.push_back(std::move(o)); }
  void push_bool(bool b) {
    auto o = make(Kind::kBool);
    o->i = b ? 1 : 0;
    push(o);
  }
  void need_stack(size_t at, size_t n) const {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) error(at, "pickle stack underflow");
  }
  Obj pop(size_t at) {
    need_stack(at, 1);
    Obj o = std::move(stack_.back());
    stack_.pop_back();
    return o;
  }
  std::vector<Obj> pop_mark(size_t at) {
    if (marks_.empty()) error(at, "pickle MARK missing");
    const size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) error(at, "pickle stack underflow");
    std::vector<Obj> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void memo_put(size_t at, size_t idx) {
    if (stack_.empty()) error(at, "memo put with an empty stack");
    memo_[idx] = stack_.back();
  }
  Obj memo_get(size_t at, size_t idx) const {
    auto it = memo_.find(idx);
    if (it == memo_.end()) error(at, "memo index " + std::to_string(idx) + " not defined");
    return it->second;
  }

  int64_t as_int(size_t at, const Obj& o, const char* what) const {
    if ((o->kind != Kind::kInt && o->kind != Kind::kBool) || o->big) {
      error(at, std::string(what) + " must be an int, got " + kind_name(o->kind));
    }
    return o->i;
  }
  std::vector<int64_t> as_ints(size_t at, const Obj& o, const char* what) const {
    if (o->kind != Kind::kTuple && o->kind != Kind::kList) {
      error(at, std::string(what) + " must be a tuple, got " + kind_name(o->kind));
    }
    std::vector<int64_t> v;
    for (const auto& e : o->items) v.push_back(as_int(at, e, what));
    return v;
  }

  Obj persistent_load(size_t at, const Obj& pid) {
    if (pid->kind != Kind::kTuple || pid->items.size() < 5 || pid->items[0]->kind != Kind::kStr ||
        pid->items[0]->s != "storage") {
      error(at, "unsupported persistent id (expected ('storage', type, key, location, numel))");
    }
    const Obj& type = pid->items[1];
    const Obj& key = pid->items[2];
    if (type->kind != Kind::kGlobal) error(at, "storage type is not a class name");
    if (key->kind != Kind::kStr) error(at, "storage key is not a string");
    at::ScalarType dtype;
    if (!storage_dtype(type->s, &dtype)) error(at, "unsupported storage type '" + type->s + "'");
    // pid->items[3] is the location tag ("cpu", "cuda:0", ...): ignored, everything is loaded on the CPU.
    const int64_t numel = as_int(at, pid->items[4], "storage size");
    return storages_.load(key->s, dtype, numel);
  }

  Obj rebuild_tensor(size_t at, const Obj& args, size_t min_args) {
    if (args->kind != Kind::kTuple || args->items.size() < min_args) error(at, "bad arguments to _rebuild_tensor");
    const Obj& st = args->items[0];
    if (st->kind != Kind::kStorage) error(at, std::string("tensor storage is a ") + kind_name(st->kind));
    const int64_t offset = as_int(at, args->items[1], "storage offset");
    const std::vector<int64_t> sizes = as_ints(at, args->items[2], "tensor size");
    const std::vector<int64_t> strides = as_ints(at, args->items[3], "tensor stride");
    if (sizes.size() != strides.size()) error(at, "tensor size and stride have different lengths");
    if (offset < 0) error(at, "negative storage offset");
    bool empty = false;
    unsigned __int128 last = static_cast<unsigned __int128>(offset);
    unsigned __int128 count = 1;
    bool too_big = false;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] < 0 || strides[d] < 0) error(at, "negative tensor size or stride");
      if (sizes[d] == 0) empty = true;
      // Each term is < 2^126 and the running values are capped below, so nothing overflows.
      last += static_cast<unsigned __int128>(sizes[d] > 0 ? sizes[d] - 1 : 0) * static_cast<uint64_t>(strides[d]);
      count *= static_cast<uint64_t>(sizes[d]);
      if (last > (static_cast<unsigned __int128>(1) << 62)) too_big = true, last = static_cast<unsigned __int128>(1) << 62;
      if (count > (static_cast<unsigned __int128>(1) << 62)) too_big = true, count = static_cast<unsigned __int128>(1) << 62;
    }
    if (too_big && !empty) error(at, "tensor size is implausibly large");
    if (!empty && last >= static_cast<unsigned __int128>(st->numel)) {
      error(at, "tensor view exceeds its storage '" + st->key + "' (" + std::to_string(st->numel) + " elements)");
    }
    auto o = make(Kind::kTensor);
    o->tensor = at::empty({0}, at::TensorOptions().dtype(st->dtype).device(at::kCPU));
    o->tensor.set_(st->storage, (empty && offset > st->numel) ? 0 : offset, sizes, strides);
    return o;
  }

  Obj reduce(size_t at, const Obj& fn, const Obj& args) {
    if (fn->kind != Kind::kGlobal) {
      auto o = make(Kind::kObject);
      o->s = "<call>";
      return o;
    }
    const std::string& name = fn->s;
    const std::vector<Obj> none;
    const std::vector<Obj>& a = args->kind == Kind::kTuple ? args->items : none;
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      return rebuild_tensor(at, args, 4);
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state" ||
        name == "torch.nn.parameter.Parameter") {
      if (a.empty()) error(at, "bad arguments to " + name);
      return a[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2" || name == "torch._tensor._rebuild_from_type") {
      // (func, new_type, args, state): the tensor is func(*args); the subclass does not matter here.
      if (a.size() < 3) error(at, "bad arguments to " + name);
      return reduce(at, a[0], a[2]);
    }
    if (name == "collections.OrderedDict" || name == "builtins.dict" || name == "__builtin__.dict") {
      auto d = make(Kind::kDict);
      if (!a.empty() && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple)) {
        for (const auto& pair : a[0]->items) {
          if ((pair->kind == Kind::kTuple || pair->kind == Kind::kList) && pair->items.size() == 2) {
            dict_set(*d, pair->items[0], pair->items[1]);
          }
        }
      } else if (!a.empty() && a[0]->kind == Kind::kDict) {
        for (size_t j = 0; j < a[0]->items.size(); ++j) dict_set(*d, a[0]->items[j], a[0]->values[j]);
      }
      return d;
    }
    if (name == "builtins.set" || name == "builtins.frozenset" || name == "__builtin__.set") {
      auto t = make(Kind::kSet);
      if (!a.empty() && (a[0]->kind == Kind::kTuple || a[0]->kind == Kind::kList)) t->items = a[0]->items;
      return t;
    }
    if (name == "torch.Size" || name == "builtins.tuple" || name == "builtins.list") {
      auto t = make(name == "builtins.list" ? Kind::kList : Kind::kTuple);
      if (!a.empty() && (a[0]->kind == Kind::kTuple || a[0]->kind == Kind::kList)) t->items = a[0]->items;
      return t;
    }
    if (name.rfind("torch._utils._rebuild", 0) == 0) {
      error(at, "unsupported tensor kind '" + name + "' (only dense CPU/CUDA tensors are supported)");
    }
    auto o = make(Kind::kObject);
    o->s = name;
    return o;
  }

  std::string path_;
  std::string record_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  StorageTable& storages_;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<size_t, Obj> memo_;
};

const Obj* dict_get(const PyObj& d, const std::string& key) {
  if (d.kind != Kind::kDict) return nullptr;
  auto it = d.str_keys.find(key);
  return it == d.str_keys.end() ? nullptr : &d.values[it->second];
}

void flatten(const std::string& path, const Obj& o, const std::string& prefix, StateDict& out, int depth);

// A pickled torch.nn.Module (torch.save(model)): its __dict__ holds _parameters, _buffers and
// _modules. Names follow state_dict(): non-persistent buffers are left out.
void flatten_module(const std::string& path, const PyObj& state, const std::string& prefix, StateDict& out, int depth) {
  auto child = [&](const std::string& k) { return prefix.empty() ? k : prefix + "." + k; };
  std::set<std::string> non_persistent;
  if (const Obj* np = dict_get(state, "_non_persistent_buffers_set")) {
    for (const auto& e : (*np)->items) {
      if (e->kind == Kind::kStr) non_persistent.insert(e->s);
    }
  }
  for (const char* group : {"_parameters", "_buffers"}) {
    const Obj* d = dict_get(state, group);
    if (!d || (*d)->kind != Kind::kDict) continue;
    for (size_t j = 0; j < (*d)->items.size(); ++j) {
      const PyObj& k = *(*d)->items[j];
      if (k.kind != Kind::kStr || (std::string(group) == "_buffers" && non_persistent.count(k.s))) continue;
      flatten(path, (*d)->values[j], child(k.s), out, depth + 1);
    }
  }
  if (const Obj* m = dict_get(state, "_modules")) {
    if ((*m)->kind != Kind::kDict) return;
    for (size_t j = 0; j < (*m)->items.size(); ++j) {
      if ((*m)->items[j]->kind == Kind::kStr) flatten(path, (*m)->values[j], child((*m)->items[j]->s), out, depth + 1);
    }
  }
}

void flatten(const std::string& path, const Obj& o, const std::string& prefix, StateDict& out, int depth) {
  if (depth > 100) fail(path, "pickled data nested more than 100 levels deep (cyclic?) at '" + prefix + "'");
  auto child = [&](const std::string& k) { return prefix.empty() ? k : prefix + "." + k; };
  switch (o->kind) {
    case Kind::kTensor:
      if (!out.emplace(prefix, o->tensor).second) fail(path, "duplicate tensor name '" + prefix + "' after flattening");
      break;
    case Kind::kDict:
      for (size_t j = 0; j < o->items.size(); ++j) {
        const PyObj& k = *o->items[j];
        std::string name;
        if (k.kind == Kind::kStr) {
          name = k.s;
        } else if (k.kind == Kind::kInt && !k.big) {
          name = std::to_string(k.i);
        } else {
          continue;  // keys of other types cannot name a tensor
        }
        flatten(path, o->values[j], child(name), out, depth + 1);
      }
      break;
    case Kind::kList:
    case Kind::kTuple:
      for (size_t j = 0; j < o->items.size(); ++j) flatten(path, o->items[j], child(std::to_string(j)), out, depth + 1);
      break;
    case Kind::kObject:
      if (o->state) {
        // BUILD state may be (dict, slotstate); take the dict.
        Obj st = o->state;
        if (st->kind == Kind::kTuple && !st->items.empty() && st->items[0]->kind == Kind::kDict) st = st->items[0];
        if (st->kind != Kind::kDict) break;
        if (dict_get(*st, "_parameters") && dict_get(*st, "_modules")) {
          flatten_module(path, *st, prefix, out, depth + 1);
        } else {
          flatten(path, st, prefix, out, depth + 1);
        }
      }
      break;
    default:
      break;  // non-tensor leaves (ints, strings, None, ...) are ignored
  }
}

std::string read_head(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string buf(n, '\0');
  in.read(&buf[0], static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(in.gcount()));
  return buf;
}

}  // namespace

StateDict read_torch_save(const std::string& path) {
  const unsigned long long size = weights_detail::file_size_checked(path);
  if (size == 0) fail(path, "empty file (expected a torch.save zip archive)");
  const std::string head = read_head(path, 16);
  if (weights_detail::is_legacy_torch_save(head)) fail(path, weights_detail::legacy_message());
  if (head.compare(0, 4, std::string("PK\x03\x04", 4)) != 0) {
    fail(path, "not a torch.save zip archive (no zip signature)");
  }
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("data.pkl")) fail(path, "zip archive has no data.pkl record: not a torch.save file");
    if (reader.hasRecord("byteorder")) {
      at::DataPtr bo;
      size_t n = 0;
      std::tie(bo, n) = reader.getRecord("byteorder");
      std::string order(static_cast<const char*>(bo.get()), n);
      if (order != "little") fail(path, "stored with byte order '" + order + "'; only little-endian files are supported");
    }
    at::DataPtr pkl;
    size_t n = 0;
    std::tie(pkl, n) = reader.getRecord("data.pkl");
    StorageTable storages(path, reader, "data/");
    Unpickler unpickler(path, "data.pkl", static_cast<const uint8_t*>(pkl.get()), n, storages);
    Obj root = unpickler.load();
    StateDict out;
    flatten(path, root, "", out, 0);
    return out;
  } catch (const zsad::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(path, "cannot read torch.save archive: " + weights_detail::one_line(e));
  }
}

StateDict read_torch_save_entry(const std::string& path, const std::string& entry) {
  const StateDict all = read_torch_save(path);
  StateDict out = strip_prefix(all, entry + ".");
  if (all.count(entry)) fail(path, "entry '" + entry + "' is a single tensor, not a dict of tensors");
  if (out.empty()) {
    std::set<std::string> tops;
    for (const auto& kv : all) tops.insert(kv.first.substr(0, kv.first.find('.')));
    std::string list;
    for (const auto& t : tops) list += (list.empty() ? "" : ", ") + t;
    fail(path, "has no tensors under '" + entry + "' (top-level entries with tensors: " +
                   (list.empty() ? std::string("none") : list) + ")");
  }
  return out;
}

}  // namespace zsad::models
