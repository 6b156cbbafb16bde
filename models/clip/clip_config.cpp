#include "models/clip/clip_config.h"

#include <cmath>
#include <set>
#include <sstream>

#include "common/error.h"

namespace zsad::models {

namespace {

ClipConfig make(const std::string& name, int64_t embed, int64_t vw, int64_t vl, int64_t patch, int64_t grid,
                int64_t tw, int64_t tl) {
  ClipConfig c;
  c.name = name;
  c.embed_dim = embed;
  c.vision_width = vw;
  c.vision_layers = vl;
  c.vision_heads = vw / 64;
  c.vision_patch = patch;
  c.vision_grid = grid;
  c.text_width = tw;
  c.text_layers = tl;
  c.text_heads = tw / 64;
  return c;
}

const at::Tensor& need(const StateDict& sd, const std::string& key) {
  auto it = sd.find(key);
  if (it == sd.end()) {
    throw Error("CLIP state dict: missing key '" + key +
                "' (needed to infer the architecture; only OpenAI-layout ViT CLIP weights are supported)");
  }
  return it->second;
}

int64_t dim(const at::Tensor& t, const std::string& key, int64_t d, int64_t expected_rank) {
  if (t.dim() != expected_rank) {
    std::ostringstream os;
    os << "CLIP state dict: key '" << key << "' has " << t.dim() << " dimensions, expected " << expected_rank;
    throw Error(os.str());
  }
  return t.size(d < 0 ? t.dim() + d : d);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void ClipConfig::validate() const {
  auto fail = [&](const std::string& what) { throw Error("CLIP config '" + name + "': " + what); };
  if (vision_width <= 0 || vision_layers <= 0 || vision_heads <= 0 || vision_patch <= 0 || vision_grid <= 0 ||
      embed_dim <= 0 || context_length <= 0 || vocab_size <= 0 || text_width <= 0 || text_layers <= 0 ||
      text_heads <= 0) {
    fail("every size must be positive");
  }
  if (vision_width % vision_heads != 0) fail("vision width " + std::to_string(vision_width) + " is not divisible by " + std::to_string(vision_heads) + " heads");
  if (text_width % text_heads != 0) fail("text width " + std::to_string(text_width) + " is not divisible by " + std::to_string(text_heads) + " heads");
  if (image_size < 0) fail("image size must be >= 0");
  if (input_size() % vision_patch != 0) {
    fail("image size " + std::to_string(input_size()) + " is not a multiple of the patch size " +
         std::to_string(vision_patch));
  }
}

std::string ClipConfig::describe() const {
  std::ostringstream os;
  os << name << " (vision " << vision_width << "x" << vision_layers << ", " << vision_heads << " heads, patch "
     << vision_patch << ", grid " << vision_grid << "; text " << text_width << "x" << text_layers << ", "
     << text_heads << " heads, ctx " << context_length << ", vocab " << vocab_size << "; embed " << embed_dim
     << ")";
  return os.str();
}

std::vector<std::string> clip_config_names() { return {"ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "tiny"}; }

ClipConfig clip_config(const std::string& name) {
  if (name == "ViT-B-32") return make(name, 512, 768, 12, 32, 7, 512, 12);
  if (name == "ViT-B-16") return make(name, 512, 768, 12, 16, 14, 512, 12);
  if (name == "ViT-L-14") return make(name, 768, 1024, 24, 14, 16, 768, 12);
  if (name == "ViT-L-14-336") return make(name, 768, 1024, 24, 14, 24, 768, 12);
  if (name == "tiny") return make(name, 64, 64, 2, 8, 4, 64, 2);
  std::string known;
  for (const auto& n : clip_config_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown CLIP architecture '" + name + "' (known: " + known + ", or auto)");
}

ClipConfig infer_config(const StateDict& sd) {
  ClipConfig c;
  c.name = "custom";
  if (!sd.count("visual.proj")) {
    throw Error("CLIP state dict: missing key 'visual.proj' (only ViT CLIP models in OpenAI's layout are supported)");
  }
  const auto& conv = need(sd, "visual.conv1.weight");
  c.vision_width = dim(conv, "visual.conv1.weight", 0, 4);
  c.vision_patch = dim(conv, "visual.conv1.weight", -1, 4);
  int64_t layers = 0;
  std::set<std::string> text_blocks;
  const std::string text_prefix = "transformer.resblocks.";
  for (const auto& [key, value] : sd) {
    if (key.rfind("visual.", 0) == 0 && ends_with(key, ".attn.in_proj_weight")) ++layers;
    if (key.rfind(text_prefix, 0) == 0) {
      auto rest = key.substr(text_prefix.size());
      text_blocks.insert(rest.substr(0, rest.find('.')));
    }
  }
  c.vision_layers = layers;
  const auto& vpos = need(sd, "visual.positional_embedding");
  int64_t p0 = dim(vpos, "visual.positional_embedding", 0, 2);
  c.vision_grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(p0 - 1))));
  if (c.vision_grid * c.vision_grid + 1 != p0) {
    throw Error("CLIP state dict: visual.positional_embedding has " + std::to_string(p0) +
                " rows, which is not grid*grid + 1");
  }
  c.embed_dim = dim(need(sd, "text_projection"), "text_projection", 1, 2);
  c.context_length = dim(need(sd, "positional_embedding"), "positional_embedding", 0, 2);
  c.vocab_size = dim(need(sd, "token_embedding.weight"), "token_embedding.weight", 0, 2);
  c.text_width = dim(need(sd, "ln_final.weight"), "ln_final.weight", 0, 1);
  c.text_heads = c.text_width / 64;
  c.text_layers = static_cast<int64_t>(text_blocks.size());
  c.vision_heads = c.vision_width / 64;
  if (c.vision_heads == 0 || c.text_heads == 0 || c.vision_layers == 0 || c.text_layers == 0) {
    throw Error("CLIP state dict: inferred an empty architecture (" + c.describe() +
                "); widths must be multiples of 64 and both towers need blocks");
  }
  for (const auto& known : clip_config_names()) {
    if (same_architecture(c, clip_config(known))) c.name = known;
  }
  return c;
}

bool same_architecture(const ClipConfig& a, const ClipConfig& b) {
  return a.vision_width == b.vision_width && a.vision_layers == b.vision_layers && a.vision_heads == b.vision_heads &&
         a.vision_patch == b.vision_patch && a.vision_grid == b.vision_grid && a.embed_dim == b.embed_dim &&
         a.context_length == b.context_length && a.vocab_size == b.vocab_size && a.text_width == b.text_width &&
         a.text_layers == b.text_layers && a.text_heads == b.text_heads;
}

ClipActivation parse_activation(const std::string& s) {
  if (s == "quick_gelu") return ClipActivation::kQuickGelu;
  if (s == "gelu") return ClipActivation::kGelu;
  throw Error("unknown CLIP activation '" + s + "' (expected quick_gelu or gelu)");
}

PosInterpolation parse_pos_interpolation(const std::string& s) {
  if (s == "bilinear") return PosInterpolation::kBilinear;
  if (s == "bicubic") return PosInterpolation::kBicubic;
  throw Error("unknown positional-embedding interpolation '" + s + "' (expected bilinear or bicubic)");
}

}  // namespace zsad::models
