#include "models/methods/apt/apt_options.h"

#include <functional>
#include <sstream>

#include "common/error.h"

namespace zsad::models::apt {
namespace {

const std::string kPrefix = "method.apt.";

std::string fmt_double(double v) {
  for (int precision = 15; precision <= 17; ++precision) {
    std::ostringstream os;
    os.precision(precision);
    os << v;
    if (precision == 17 || std::stod(os.str()) == v) return os.str();
  }
  return {};
}

[[noreturn]] void bad(const std::string& key, const std::string& what, const std::string& v) {
  throw Error(kPrefix + key + ": expected " + what + ", got '" + v + "'");
}

bool parse_bool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "True" || v == "on" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "False" || v == "off" || v == "0" || v == "no") return false;
  bad(key, "true/false", v);
}

int64_t parse_int(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    long long x = std::stoll(v, &pos);
    if (pos == v.size()) return x;
  } catch (const std::exception&) {
  }
  bad(key, "an integer", v);
}

double parse_double(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    double x = std::stod(v, &pos);
    if (pos == v.size()) return x;
  } catch (const std::exception&) {
  }
  bad(key, "a number", v);
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\"'");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\"'");
  return s.substr(b, e - b + 1);
}

// "[a, b]" or "a,b" or "[]".
std::vector<std::string> parse_list(const std::string& v) {
  std::string s = trim(v);
  if (!s.empty() && s.front() == '[') s = s.substr(1);
  if (!s.empty() && s.back() == ']') s.pop_back();
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, ',')) {
    cur = trim(cur);
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

std::string fmt_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + ("\"" + v[i] + "\"");
  return s + "]";
}

template <typename E>
struct EnumDef {
  std::vector<std::pair<std::string, E>> names;
  E parse(const std::string& key, const std::string& v) const {
    for (auto& [n, e] : names)
      if (n == v) return e;
    std::string all;
    for (auto& [n, e] : names) all += (all.empty() ? "" : "|") + n;
    bad(key, all, v);
  }
  std::string name(E e) const {
    for (auto& [n, x] : names)
      if (x == e) return n;
    return "?";
  }
  std::vector<std::string> choices() const {
    std::vector<std::string> c;
    for (auto& [n, e] : names) c.push_back(n);
    return c;
  }
};

struct KeyDef {
  AptOptionKey info;
  std::function<void(AptOptions&, const std::string&)> set;
  std::function<std::string(const AptOptions&)> get;
};

#define APT_INT(field, status, help)                                                                      \
  KeyDef{{#field, "int", "", status, help, {}},                                                         \
         [](AptOptions& o, const std::string& v) { o.field = parse_int(#field, v); },                  \
         [](const AptOptions& o) { return std::to_string(o.field); }}
#define APT_DOUBLE(field, status, help)                                                                   \
  KeyDef{{#field, "float", "", status, help, {}},                                                       \
         [](AptOptions& o, const std::string& v) { o.field = parse_double(#field, v); },               \
         [](const AptOptions& o) { return fmt_double(o.field); }}
#define APT_BOOL(field, status, help)                                                                     \
  KeyDef{{#field, "bool", "", status, help, {}},                                                        \
         [](AptOptions& o, const std::string& v) { o.field = parse_bool(#field, v); },                 \
         [](const AptOptions& o) { return std::string(o.field ? "true" : "false"); }}
#define APT_STRING(field, status, help)                                                                   \
  KeyDef{{#field, "string", "", status, help, {}},                                                      \
         [](AptOptions& o, const std::string& v) { o.field = v == "null" ? std::string() : trim(v); },       \
         [](const AptOptions& o) { return o.field.empty() ? std::string("null") : "\"" + o.field + "\""; }}
#define APT_STRLIST(field, status, help)                                                                  \
  KeyDef{{#field, "list", "", status, help, {}},                                                        \
         [](AptOptions& o, const std::string& v) { o.field = parse_list(v); },                         \
         [](const AptOptions& o) { return fmt_list(o.field); }}
#define APT_ENUM(field, def, status, help)                                                                \
  KeyDef{{#field, "string", "", status, help, def.choices()},                                          \
         [](AptOptions& o, const std::string& v) { o.field = def.parse(#field, trim(v)); },            \
         [](const AptOptions& o) { return def.name(o.field); }}

const EnumDef<SynthRegion> kRegion{{{"perlin", SynthRegion::kPerlin}, {"shapes", SynthRegion::kShapes},
                                    {"mixed", SynthRegion::kMixed}}};
const EnumDef<SynthNoise> kNoise{{{"mixed", SynthNoise::kMixed}, {"gaussian", SynthNoise::kGaussian}}};
const EnumDef<ObjectMaskMode> kObject{{{"clip", ObjectMaskMode::kClip}, {"none", ObjectMaskMode::kNone}}};
const EnumDef<SmgsMode> kSmgs{{{"none", SmgsMode::kNone}, {"fixed", SmgsMode::kFixed}, {"ema", SmgsMode::kEma},
                               {"learnable", SmgsMode::kLearnable}}};
const EnumDef<SmgsGrad> kGrad{{{"projection", SmgsGrad::kProjection}, {"additive", SmgsGrad::kAdditive},
                               {"both", SmgsGrad::kBoth}}};
const EnumDef<SmgsLoss> kGLoss{{{"kl", SmgsLoss::kKl}, {"l2", SmgsLoss::kL2}}};
const EnumDef<ScoreFusion> kFusion{{{"harmonic", ScoreFusion::kHarmonic}, {"mean", ScoreFusion::kMean},
                                    {"text", ScoreFusion::kText}, {"visual", ScoreFusion::kVisual}}};
const EnumDef<AnchorMean> kAnchor{{{"raw", AnchorMean::kRaw}, {"normalized", AnchorMean::kNormalized}}};
const EnumDef<Optimizer> kOptim{{{"sgd", Optimizer::kSgd}, {"adam", Optimizer::kAdam}}};
const EnumDef<SynthSpace> kSpace{{{"pixel", SynthSpace::kPixel}, {"latent", SynthSpace::kLatent}}};
const EnumDef<TextImageScore> kTextScore{{{"global", TextImageScore::kGlobal}, {"max_patch", TextImageScore::kMaxPatch}}};
const EnumDef<ImageScore> kImageScore{{{"fusion", ImageScore::kFusion}, {"max_map", ImageScore::kMaxMap}}};
const EnumDef<AttnMode> kAttn{{{"vv", AttnMode::kVv}, {"local", AttnMode::kLocal}}};
const EnumDef<LocalScores> kLocalScores{{{"qk", LocalScores::kQk}, {"vv", LocalScores::kVv}}};
const EnumDef<ClassParallel> kParallel{{{"shard", ClassParallel::kShard}, {"ddp", ClassParallel::kDdp}}};
const EnumDef<ClassNameMapping> kMapping{{{"promptad", ClassNameMapping::kPromptAD},
                                          {"none", ClassNameMapping::kNone}}};

const std::vector<KeyDef>& key_table() {
  static const std::vector<KeyDef> table = [] {
    std::vector<KeyDef> t = {
        APT_INT(shots, "R", "k normal shots per class (WinCLIP/PromptAD protocol: 1, 2, 4)"),
        APT_INT(shot_seed, "V-code:PromptAD", "seed of the shot draw (PromptAD seed 111); -1 = the run seed"),
        APT_STRING(shot_list, "V-code:PromptAD",
                   "WinCLIP seed-file pattern with {cls} (lines '#k: name ...'); null = draw by seed"),
        APT_INT(shot_list_run, "R", "which '#k:' run of the shot list (mod the runs listed); -1 = the run seed"),
        APT_INT(variants_per_shot, "R", "r synthetic variants per shot and step; -1 = 4 for k=1, else 2"),
        APT_ENUM(synth_region, kRegion, "R", "anomaly region mask: perlin (DRAEM) | shapes | mixed"),
        APT_ENUM(synth_noise, kNoise, "R", "noise family: mixed (gaussian/uniform/salt-pepper 0.6/0.2/0.2) | gaussian"),
        APT_ENUM(synth_space, kSpace, "R",
                 "where the noise goes: pixel (the image, then encoded) | latent (the shot's patch tokens under the "
                 "region mask; the spec's optional latent variant)"),
        APT_DOUBLE(synth_latent_sigma, "R", "latent variant: noise norm against the unit patch tokens"),
        APT_DOUBLE(sigma_min, "R", "lower end of the noise strength U[sigma_min, sigma_max]"),
        APT_DOUBLE(sigma_max, "R", "upper end of the noise strength"),
        APT_DOUBLE(blur_probability, "R", "probability of a 3x3 blur inside the mask"),
        APT_DOUBLE(min_mask_area, "R", "resample the region until the mask covers this fraction"),
        APT_ENUM(object_mask, kObject, "S", "OAGM object mask from CLIP patch/text similarity: clip | none"),
        APT_DOUBLE(object_logit_scale, "R", "softmax scale of the objectness [<F,t_obj>, <F,t_bg>]"),
        APT_DOUBLE(object_threshold, "R", "objectness threshold after bilinear upsampling"),
        APT_INT(object_dilate, "R", "dilation of the object mask in patches"),
        APT_DOUBLE(object_min_fraction, "R", "object masks below this fraction fall back to the whole image"),
        APT_STRLIST(texture_classes, "R", "classes whose object mask is the whole image"),
        APT_STRING(object_prompt, "R", "object text, {} = class name"),
        APT_STRING(background_prompt, "R", "background text"),
        APT_INT(n_normal_prompts, "V-code:PromptAD", "N_n normal prompts (PromptAD: 3 cls / 1 seg)"),
        APT_INT(n_ctx, "V-code:PromptAD", "M normal context tokens per prompt"),
        APT_INT(n_abnormal_ctx, "V-code:PromptAD", "K abnormal suffix tokens"),
        APT_INT(n_abnormal_prompts, "V-code:PromptAD", "N_a abnormal suffixes (N_n x N_a abnormal prompts)"),
        APT_DOUBLE(init_std, "V-code:PromptAD", "N(0, std^2) initialisation of the contexts"),
        APT_ENUM(class_name_mapping, kMapping, "V-code:PromptAD", "class-name text: promptad mapping | none"),
        APT_ENUM(train_anchor, kAnchor, "R", "training anchors: normalized (mean of normalised) | raw"),
        APT_ENUM(test_anchor, kAnchor, "V-code:PromptAD", "scoring anchors: raw (mean of raw features) | normalized"),
        APT_BOOL(train, "impl", "train the prompts (false = untrained-prompt ablation)"),
        APT_INT(epochs, "V-code:PromptAD", "epochs per class"),
        APT_INT(steps_per_epoch, "R", "optimizer steps per epoch, fresh synthetic noise each step"),
        APT_ENUM(optimizer, kOptim, "V-code:PromptAD", "sgd (PromptAD) | adam (beta1 = momentum, beta2 0.999)"),
        APT_DOUBLE(lr, "V-code:PromptAD", "learning rate"),
        APT_DOUBLE(momentum, "V-code:PromptAD", "SGD momentum (Adam beta1)"),
        APT_DOUBLE(weight_decay, "V-code:PromptAD", "weight decay (L2 added to the gradient)"),
        APT_DOUBLE(eta_min, "V-code:PromptAD", "cosine schedule floor (stepped per epoch, T_max = epochs)"),
        APT_DOUBLE(tau, "R", "logit scale of L_img, L_pix and L_g"),
        APT_DOUBLE(w_image, "R", "weight of the image CE (clean vs synthetic)"),
        APT_DOUBLE(w_pixel, "R", "lambda_pix: weight of focal + dice on the synthetic masks"),
        APT_DOUBLE(focal_gamma, "V-code:AnomalyCLIP", "focal loss gamma"),
        APT_BOOL(promptad_terms, "R", "add PromptAD's L_v2t and L_tri on the clean shots"),
        APT_DOUBLE(promptad_tau, "V-code:PromptAD", "scale of L_v2t (raw logit_scale quirk)"),
        APT_DOUBLE(w_v2t, "R", "weight of L_v2t"),
        APT_DOUBLE(w_triplet, "R", "weight of L_tri"),
        APT_DOUBLE(triplet_margin, "V-code:PromptAD", "triplet margin"),
        APT_ENUM(smgs_mode, kSmgs, "R",
                 "meta-prompt: none | fixed (MPTS-like anchor) | ema (self-optimizing) | learnable (bi-level token "
                 "sequence)"),
        APT_ENUM(smgs_grad, kGrad, "R", "guidance: projection (ProGrad) | additive (L_d + w L_g) | both"),
        APT_ENUM(smgs_loss, kGLoss, "R", "guidance loss: kl (prediction level) | l2 (feature level)"),
        APT_DOUBLE(smgs_lambda, "S", "ProGrad lambda"),
        APT_DOUBLE(smgs_weight, "R", "lambda_g of the additive form"),
        APT_DOUBLE(smgs_kl_temperature, "V-code:ProGrad", "T of the T^2 KL"),
        APT_BOOL(smgs_patch_kl, "R", "also apply the KL guidance on patch tokens"),
        APT_DOUBLE(smgs_beta, "R", "EMA factor of the meta-prompt update (per epoch)"),
        APT_DOUBLE(smgs_gamma, "R", "pull-back of the meta-prompt to its initial anchor"),
        APT_STRING(meta_state_name, "R", "word in the state prompts: object | class"),
        APT_STRLIST(normal_states, "V-code:WinCLIP", "normal state words of the initial meta-prompt"),
        APT_STRLIST(abnormal_states, "V-code:WinCLIP", "abnormal state words of the initial meta-prompt"),
        APT_STRING(meta_template, "R", "template of the meta-prompt ensemble"),
        APT_BOOL(smgs_gate, "R", "EMA update only if the held-out synthetic AUROC improved since the last update"),
        APT_INT(smgs_gate_images, "R", "gate: about this many held-out synthetic images (k clean shots as negatives)"),
        APT_STRING(smgs_gate_metric, "R", "gate AUROC: image | pixel | mean"),
        APT_DOUBLE(smgs_gate_margin, "R", "gate: the AUROC must exceed the reference by more than this"),
        APT_STRING(smgs_meta_normal, "R", "learnable meta-prompt: initial normal text, {} = class text"),
        APT_STRING(smgs_meta_abnormal, "R", "learnable meta-prompt: initial abnormal text, {} = class text"),
        APT_DOUBLE(smgs_meta_lr_scale, "R", "learnable meta-prompt: outer-step lr = lr * this (spec: 10x smaller)"),
        APT_INT(smgs_meta_every, "R", "learnable meta-prompt: one outer step every this many inner steps"),
        APT_INT(vv_depth, "V-code:PromptAD", "V-V dual-path blocks (-1 = all)"),
        APT_ENUM(attn_mode, kAttn, "R",
                 "dual-path attention: vv (PromptAD V-V) | local (Locality-Aware Attention of 2406.18197: patch rows "
                 "attend to patches within attn_window, not to CLS; CLS row global)"),
        APT_INT(attn_window, "R", "Chebyshev window w of the local attention in patches (1 = 3x3, 2 = 5x5)"),
        APT_ENUM(attn_local_scores, kLocalScores, "R", "scores of the local attention: qk (q k^T, spec) | vv (v v^T)"),
        APT_BOOL(memory_bank, "V-code:PromptAD", "visual memory bank of the clean shots"),
        KeyDef{{"memory_layers", "list", "", "V-code:PromptAD", "1-based blocks whose original-path tokens form the memory bank", {}},
               [](AptOptions& o, const std::string& v) {
                 o.memory_layers.clear();
                 for (auto& s : parse_list(v)) o.memory_layers.push_back(parse_int("memory_layers", s));
               },
               [](const AptOptions& o) {
                 std::string s = "[";
                 for (size_t i = 0; i < o.memory_layers.size(); ++i)
                   s += (i ? ", " : "") + std::to_string(o.memory_layers[i]);
                 return s + "]";
               }},
        APT_ENUM(fusion, kFusion, "R", "text/visual fusion: harmonic (PromptAD) | mean | text | visual"),
        APT_ENUM(text_image_score, kTextScore, "R",
                 "text image score s_txt: global (softmax on g, PromptAD) | max_patch (max of the text map)"),
        APT_ENUM(image_score, kImageScore, "R",
                 "image score: fusion of s_txt and s_vis (PromptAD) | max_map (max of the fused anomaly map)"),
        APT_BOOL(bgr_test_quirk, "V-code:PromptAD",
                 "feed test images BGR-as-RGB, as PromptAD's test loader does (shots and memory bank stay RGB); "
                 "for matching its numbers only"),
        APT_DOUBLE(score_tau, "V-code:PromptAD", "scoring softmax scale (raw logit_scale ~4.6, PromptAD quirk)"),
        APT_ENUM(class_parallel, kParallel, "impl",
                 "several ranks: shard (each class on one rank) | ddp (every class on all ranks, its synthetic "
                 "batch split over them, gradients summed)"),
    };
    const AptOptions defaults;
    for (auto& k : t) k.info.default_value = k.get(defaults);
    return t;
  }();
  return table;
}

}  // namespace

void AptOptions::validate() const {
  auto need = [](bool ok, const std::string& key, const std::string& what) {
    if (!ok) throw Error(kPrefix + key + ": " + what);
  };
  need(shots >= 1, "shots", "must be >= 1");
  need(variants() >= 1, "variants_per_shot", "must give >= 1 variant");
  need(sigma_min >= 0 && sigma_max >= sigma_min, "sigma_max", "needs 0 <= sigma_min <= sigma_max");
  need(synth_latent_sigma >= 0, "synth_latent_sigma", "must be >= 0");
  need(n_normal_prompts >= 1 && n_abnormal_prompts >= 1, "n_normal_prompts", "prompt counts must be >= 1");
  need(n_ctx >= 1 && n_abnormal_ctx >= 1, "n_ctx", "context lengths must be >= 1");
  need(epochs >= 0 && steps_per_epoch >= 1, "epochs", "epochs >= 0 and steps_per_epoch >= 1");
  need(smgs_beta >= 0 && smgs_beta <= 1, "smgs_beta", "must lie in [0,1]");
  need(smgs_gamma >= 0, "smgs_gamma", "must be >= 0");
  need(smgs_meta_lr_scale >= 0, "smgs_meta_lr_scale", "must be >= 0");
  need(smgs_meta_every >= 1, "smgs_meta_every", "must be >= 1");
  need(smgs_gate_images >= 1, "smgs_gate_images", "must be >= 1");
  need(smgs_gate_metric == "image" || smgs_gate_metric == "pixel" || smgs_gate_metric == "mean", "smgs_gate_metric",
       "must be image, pixel or mean");
  need(!smgs_gate || smgs_mode == SmgsMode::kEma, "smgs_gate", "gates the EMA update: needs smgs_mode ema");
  need(meta_state_name == "object" || meta_state_name == "class", "meta_state_name", "must be object or class");
  need(!normal_states.empty() && !abnormal_states.empty(), "normal_states", "state lists must not be empty");
  need(attn_window >= 0, "attn_window", "must be >= 0");
  for (auto l : memory_layers) need(l >= 1, "memory_layers", "layers are 1-based");
  need(!memory_bank || !memory_layers.empty() || fusion == ScoreFusion::kText, "memory_layers",
       "the memory bank needs at least one layer");
  need(memory_bank || fusion == ScoreFusion::kText, "fusion",
       "fusion '" + kFusion.name(fusion) + "' needs memory_bank true (or use fusion text)");
}

std::vector<AptOptionKey> apt_option_keys() {
  std::vector<AptOptionKey> out;
  for (const auto& k : key_table()) out.push_back(k.info);
  return out;
}

void set_apt_option(AptOptions& o, const std::string& key_in, const std::string& value) {
  std::string key = key_in.rfind(kPrefix, 0) == 0 ? key_in.substr(kPrefix.size()) : key_in;
  for (const auto& k : key_table()) {
    if (k.info.name == key) {
      k.set(o, value);
      return;
    }
  }
  throw Error("unknown APT option '" + kPrefix + key + "' (see docs/apt.md)");
}

AptOptions apt_options_from(const std::map<std::string, std::string>& kv) {
  AptOptions o;
  for (const auto& [k, v] : kv) set_apt_option(o, k, v);
  o.validate();
  return o;
}

std::map<std::string, std::string> apt_options_to_map(const AptOptions& o) {
  std::map<std::string, std::string> m;
  for (const auto& k : key_table()) m[k.info.name] = k.get(o);
  return m;
}

}  // namespace zsad::models::apt
