#pragma once
// Shared by the CoPS tests: run tests/models/cops_reference.py ($ZSAD_PYTHON) into a temp file,
// read its arrays as tensors, build CopsModel with the reference weights and a tiny CLIP text tower.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>

#include <ATen/ATen.h>

#include "common/h5.h"
#include "models/clip/clip_model.h"
#include "models/methods/cops/cops_clip.h"
#include "models/methods/cops/cops_model.h"

namespace zsad::test::cops {

namespace mc = zsad::models::cops;

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// Runs the reference script; returns the path of the HDF5 file it wrote.
inline std::string run_reference(const std::string& stem, const std::string& args) {
  static int counter = 0;
  const std::string out = "/tmp/zsad_cops_" + stem + "_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".h5";
  const std::string py = env_or("ZSAD_PYTHON", "/usr/bin/python3");
  const std::string src = env_or("ZSAD_SOURCE_DIR", ".");
  const std::string cmd = py + " " + src + "/tests/models/cops_reference.py --out " + out + " " + args;
  const int rc = std::system(cmd.c_str());
  if (rc != 0) throw std::runtime_error("reference script failed (" + std::to_string(rc) + "): " + cmd);
  return out;
}

inline at::Tensor read(const h5::File& f, const std::string& name, at::ScalarType dtype = at::kDouble) {
  const auto shape = f.shape(name);
  if (f.stored_type(name) == h5::DType::kInt64) {
    auto v = f.read_int64(name);
    return at::tensor(v, at::kLong).reshape(shape).clone();
  }
  auto v = f.read_double(name);
  return at::tensor(v, at::kDouble).reshape(shape).to(dtype);
}

inline std::map<std::string, at::Tensor> read_group(const h5::File& f, const std::string& group,
                                                    at::ScalarType dtype = at::kDouble) {
  std::map<std::string, at::Tensor> out;
  for (const auto& k : f.children(group)) out[k] = read(f, group + "/" + k, dtype);
  return out;
}

// Max |a-b| / max(|b|max, tiny) — a norm-wise relative error that is robust to zeros.
inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  auto ad = a.detach().to(at::kDouble), bd = b.detach().to(at::kDouble);
  EXPECT_EQ(ad.sizes(), bd.sizes());
  if (ad.sizes() != bd.sizes()) return 1e30;
  const double den = std::max(bd.abs().max().item<double>(), 1e-30);
  return (ad - bd).abs().max().item<double>() / den;
}

#define EXPECT_REL(a, b, tol) EXPECT_LE(::zsad::test::cops::rel_err((a), (b)), (tol)) << #a " vs " #b

// Options matching the reference script's defaults (D 64, 4 heads, M 6, depth 3 x 4 tokens).
inline mc::CopsOptions small_options(const h5::File& f) {
  mc::CopsOptions o;
  o.feature_dim = f.attr_int("/", "dim");
  o.extractor_heads = f.attr_int("/", "heads");
  o.num_prototypes = f.attr_int("/", "M");
  o.n_ctx = f.attr_int("/", "n_ctx");
  o.cls_len = f.attr_int("/", "cls_len");
  o.deep_prompt_depth = f.attr_int("/", "depth");
  o.deep_prompt_length = f.attr_int("/", "deep_len");
  return o;
}

// A tiny CLIP (models/clip) whose text tower carries the reference weights.
inline zsad::models::ClipModel tiny_clip(const h5::File& f, at::ScalarType dtype) {
  auto cfg = zsad::models::clip_config("tiny");
  cfg.text_width = f.attr_int("/", "dim");
  cfg.embed_dim = cfg.text_width;
  cfg.text_layers = f.attr_int("/", "layers");
  cfg.text_heads = f.attr_int("/", "text_heads");
  zsad::models::ClipModel m(cfg);
  at::NoGradGuard ng;
  auto params = m->named_parameters();
  for (const auto& k : f.children("clip")) {
    auto* p = params.find(k);
    if (!p) throw std::runtime_error("tiny CLIP has no parameter " + k);
    p->copy_(read(f, "clip/" + k, at::kFloat).to(p->scalar_type()));
  }
  auto ids = read(f, "tok/ids");
  auto rows = read(f, "tok/rows");
  m->token_embedding->weight.index_copy_(0, ids, rows.to(m->token_embedding->weight.scalar_type()));
  m->to(dtype);
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

}  // namespace zsad::test::cops
