#include "data/index.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace zsad::data {

// ---------------------------------------------------------------------------------------------
// Split / Meta

size_t Split::size() const {
  size_t n = 0;
  for (const auto& kv : samples) n += kv.second.size();
  return n;
}

std::vector<Sample> Split::flat() const {
  std::vector<Sample> out;
  out.reserve(size());
  for (const auto& c : classes) {
    auto it = samples.find(c);
    if (it != samples.end()) out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return out;
}

void Split::add(const Sample& s) {
  auto it = samples.find(s.cls_name);
  if (it == samples.end()) {
    classes.push_back(s.cls_name);
    it = samples.emplace(s.cls_name, std::vector<Sample>{}).first;
  }
  it->second.push_back(s);
}

const Split& Meta::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "test") return test;
  throw Error("unknown split '" + name + "' (expected train or test)");
}

// ---------------------------------------------------------------------------------------------
// meta.json

namespace {

ojson split_to_json(const Split& s) {
  ojson out = ojson::object();
  for (const auto& c : s.classes) {
    ojson arr = ojson::array();
    for (const Sample& x : s.samples.at(c)) {
      ojson j;
      j["img_path"] = x.img_path;
      j["mask_path"] = x.mask_path;
      j["cls_name"] = x.cls_name;
      j["specie_name"] = x.specie_name;
      j["anomaly"] = x.anomaly;
      arr.push_back(std::move(j));
    }
    out[c] = std::move(arr);
  }
  return out;
}

std::string get_string(const ojson& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (std::string(key) == "mask_path" || std::string(key) == "specie_name") return "";
    throw Error(where + ": sample has no key '" + key + "'");
  }
  if (it->is_null()) return "";
  if (!it->is_string()) throw Error(where + ": key '" + key + "' must be a string");
  return it->get<std::string>();
}

Split split_from_json(const ojson& j, const std::string& where) {
  Split s;
  if (!j.is_object()) throw Error(where + ": expected an object {class: [samples]}");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string cls = it.key();
    if (!it->is_array()) throw Error(where + "." + cls + ": expected an array of samples");
    s.classes.push_back(cls);
    auto& vec = s.samples[cls];
    size_t i = 0;
    for (const auto& e : *it) {
      const std::string w = where + "." + cls + "[" + std::to_string(i++) + "]";
      if (!e.is_object()) throw Error(w + ": expected a sample object");
      Sample x;
      x.img_path = get_string(e, "img_path", w);
      x.mask_path = get_string(e, "mask_path", w);
      x.cls_name = e.contains("cls_name") ? get_string(e, "cls_name", w) : cls;
      x.specie_name = get_string(e, "specie_name", w);
      auto a = e.find("anomaly");
      if (a == e.end()) throw Error(w + ": sample has no key 'anomaly'");
      if (a->is_boolean()) x.anomaly = a->get<bool>() ? 1 : 0;
      else if (a->is_number_integer()) x.anomaly = a->get<int>() != 0 ? 1 : 0;
      else throw Error(w + ": key 'anomaly' must be 0 or 1");
      vec.push_back(std::move(x));
    }
  }
  return s;
}

}  // namespace

std::string meta_to_json(const Meta& meta) {
  ojson j;
  j["train"] = split_to_json(meta.train);
  j["test"] = split_to_json(meta.test);
  if (!meta.layout.empty()) {
    j["zsad"]["layout"] = meta.layout;
    j["zsad"]["image_metrics"] = meta.capabilities.image_metrics;
    j["zsad"]["pixel_metrics"] = meta.capabilities.pixel_metrics;
  }
  return j.dump(4) + "\n";
}

Meta meta_from_json(const std::string& text, const std::string& origin) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const std::exception& e) {
    throw Error(origin + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(origin + ": expected a JSON object with keys train and test");
  Meta m;
  if (j.contains("train")) m.train = split_from_json(j["train"], origin + ": train");
  if (j.contains("test")) m.test = split_from_json(j["test"], origin + ": test");
  if (!j.contains("train") && !j.contains("test")) throw Error(origin + ": has neither 'train' nor 'test'");
  if (j.contains("zsad") && j["zsad"].is_object()) {
    const auto& z = j["zsad"];
    m.layout = z.value("layout", std::string());
    m.capabilities.image_metrics = z.value("image_metrics", true);
    m.capabilities.pixel_metrics = z.value("pixel_metrics", true);
  } else {
    m.capabilities = infer_capabilities(m);
  }
  return m;
}

Meta read_meta(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open meta.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return meta_from_json(ss.str(), path);
}

void write_meta(const Meta& meta, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(path + ": cannot open for writing");
  out << meta_to_json(meta);
  if (!out) throw Error(path + ": write failed");
}

std::string resolve_path(const std::string& root, const std::string& path) {
  if (path.empty()) return path;
  if (path[0] == '/' || root.empty()) return path;
  if (root.back() == '/') return root + path;
  return root + "/" + path;
}

Capabilities infer_capabilities(const Meta& meta) {
  Capabilities c;
  bool any_normal = false, any_anomal = false, any_mask = false;
  for (const auto& kv : meta.test.samples)
    for (const auto& s : kv.second) {
      (s.anomaly ? any_anomal : any_normal) = true;
      any_mask = any_mask || !s.mask_path.empty();
    }
  c.image_metrics = any_normal && any_anomal;
  c.pixel_metrics = any_mask;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Layouts

namespace {

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

bool is_image_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  const std::string ext = lower(fs::path(name).extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff";
}

std::vector<std::string> list_dirs(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (!n.empty() && n[0] != '.' && e.is_directory()) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> list_images(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && is_image_name(n)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

std::string stem_of(const std::string& name) { return fs::path(name).stem().string(); }

// Masks of one folder keyed by stem; an image NNN finds NNN_mask / NNN / NNN_Segmentation / ...
class MaskFolder {
 public:
  MaskFolder() = default;
  MaskFolder(const fs::path& dir, std::string rel) : rel_(std::move(rel)) {
    for (const auto& n : list_images(dir)) by_stem_.emplace(stem_of(n), n);
  }
  // Relative path of the mask for image file `img_name`, or "" when there is none.
  std::string find(const std::string& img_name) const {
    const std::string s = stem_of(img_name);
    static const char* suffixes[] = {"_mask", "", "_Segmentation", "_segmentation", "_label", "_gt"};
    for (const char* suf : suffixes) {
      auto it = by_stem_.find(s + suf);
      if (it != by_stem_.end()) return rel_ + "/" + it->second;
    }
    return "";
  }
  bool empty() const { return by_stem_.empty(); }

 private:
  std::string rel_;
  std::map<std::string, std::string> by_stem_;
};

std::string join_rel(const std::string& a, const std::string& b) { return a.empty() ? b : a + "/" + b; }

// <cls>/{train,test}/<specie>/img with <cls>/ground_truth/<specie>/img_mask.
void index_mvtec_like(const fs::path& root, Meta& meta, const std::set<std::string>& normal,
                      const std::string& layout) {
  std::vector<std::string> classes;
  for (const auto& c : list_dirs(root))
    if (is_dir(root / c / "train") || is_dir(root / c / "test")) classes.push_back(c);
  if (classes.empty())
    throw Error(root.string() + ": no class folders containing train/ or test/ (layout " + layout + ": " +
                layout_description(layout) + ")");
  for (const auto& cls : classes) {
    for (const char* phase : {"train", "test"}) {
      const fs::path pdir = root / cls / phase;
      if (!is_dir(pdir)) continue;
      Split& split = std::string(phase) == "train" ? meta.train : meta.test;
      for (const auto& specie : list_dirs(pdir)) {
        const bool anomalous = normal.count(specie) == 0;
        MaskFolder masks;
        if (anomalous) masks = MaskFolder(root / cls / "ground_truth" / specie, cls + "/ground_truth/" + specie);
        for (const auto& img : list_images(pdir / specie)) {
          Sample s;
          s.img_path = cls + "/" + phase + "/" + specie + "/" + img;
          s.mask_path = anomalous ? masks.find(img) : "";
          s.cls_name = cls;
          s.specie_name = specie;
          s.anomaly = anomalous ? 1 : 0;
          split.add(s);
        }
      }
      if (!split.samples.count(cls)) {
        split.classes.push_back(cls);
        split.samples[cls];
      }
    }
  }
}

// A small CSV reader: comma-separated, optional double quotes, CRLF tolerated.
std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(path.string() + ": cannot open CSV");
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> cells;
    std::string cur;
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char ch = line[i];
      if (quoted) {
        if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') { cur += '"'; ++i; }
        else if (ch == '"') quoted = false;
        else cur += ch;
      } else if (ch == '"') {
        quoted = true;
      } else if (ch == ',') {
        cells.push_back(cur);
        cur.clear();
      } else {
        cur += ch;
      }
    }
    cells.push_back(cur);
    rows.push_back(std::move(cells));
  }
  return rows;
}

void index_visa(const fs::path& root, Meta& meta) {
  const fs::path csv = root / "split_csv" / "1cls.csv";
  const auto rows = read_csv(csv);
  if (rows.empty()) throw Error(csv.string() + ": empty CSV (expected header object,split,label,image,mask)");
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < rows[0].size(); ++i) col[lower(rows[0][i])] = i;
  for (const char* need : {"object", "split", "label", "image", "mask"})
    if (!col.count(need)) throw Error(csv.string() + ": header has no column '" + need + "' (expected object,split,label,image,mask)");
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    auto cell = [&](const char* name) -> std::string {
      const size_t i = col[name];
      return i < row.size() ? row[i] : std::string();
    };
    const std::string where = csv.string() + ":" + std::to_string(r + 1);
    Sample s;
    s.cls_name = cell("object");
    s.img_path = cell("image");
    const std::string label = lower(cell("label"));
    if (label == "normal") s.anomaly = 0;
    else if (label == "anomaly") s.anomaly = 1;
    else throw Error(where + ": label '" + cell("label") + "' (expected normal or anomaly)");
    s.mask_path = s.anomaly ? cell("mask") : "";
    s.specie_name = "";
    const std::string split = lower(cell("split"));
    if (split == "train") meta.train.add(s);
    else if (split == "test") meta.test.add(s);
    else throw Error(where + ": split '" + cell("split") + "' (expected train or test)");
  }
}

// Test-only set of <dir>/<specie>/img, normal species given, optional single mask folder.
void index_species_dir(const fs::path& root, const std::string& rel_dir, const std::string& cls,
                       const std::set<std::string>& normal, const std::set<std::string>& only,
                       const std::set<std::string>& skip, const MaskFolder* masks, Meta& meta) {
  const fs::path dir = rel_dir.empty() ? root : root / rel_dir;
  bool any = false;
  for (const auto& specie : list_dirs(dir)) {
    if (skip.count(specie)) continue;
    if (!only.empty() && !only.count(specie)) continue;
    const bool anomalous = normal.count(specie) == 0;
    for (const auto& img : list_images(dir / specie)) {
      Sample s;
      s.img_path = join_rel(rel_dir, specie + "/" + img);
      s.mask_path = anomalous && masks ? masks->find(img) : "";
      s.cls_name = cls;
      s.specie_name = specie;
      s.anomaly = anomalous ? 1 : 0;
      meta.test.add(s);
      any = true;
    }
  }
  if (!any) throw Error(dir.string() + ": no images found in its sub-folders");
}

void index_images_masks(const fs::path& root, Meta& meta, const std::string& cls) {
  if (!is_dir(root / "images")) throw Error(root.string() + ": no images/ folder (expected images/ and masks/)");
  MaskFolder masks(root / "masks", "masks");
  for (const auto& img : list_images(root / "images")) {
    Sample s;
    s.img_path = "images/" + img;
    s.mask_path = masks.find(img);
    s.cls_name = cls;
    s.specie_name = "";
    s.anomaly = 1;
    meta.test.add(s);
  }
  if (meta.test.size() == 0) throw Error(root.string() + "/images: no images found");
}

void index_folder(const fs::path& root, Meta& meta) {
  bool any_mask = false;
  for (const auto& cls : list_dirs(root)) {
    for (const auto& specie : list_dirs(root / cls)) {
      if (specie == "ground_truth") continue;
      const bool anomalous = specie != "good";
      MaskFolder masks;
      if (anomalous) masks = MaskFolder(root / cls / "ground_truth" / specie, cls + "/ground_truth/" + specie);
      any_mask = any_mask || !masks.empty();
      for (const auto& img : list_images(root / cls / specie)) {
        Sample s;
        s.img_path = cls + "/" + specie + "/" + img;
        s.mask_path = anomalous ? masks.find(img) : "";
        s.cls_name = cls;
        s.specie_name = specie;
        s.anomaly = anomalous ? 1 : 0;
        meta.test.add(s);
      }
    }
  }
  if (meta.test.size() == 0)
    throw Error(root.string() + ": no images found (layout folder: " + layout_description("folder") + ")");
  meta.capabilities.pixel_metrics = any_mask;
}

}  // namespace

const std::vector<std::string>& layout_names() {
  static const std::vector<std::string> names = {"mvtec", "visa", "btad", "mpdd", "dtd", "headct", "brainmri",
                                                 "br35h", "isic", "colondb", "clinicdb", "kvasir", "endo", "folder"};
  return names;
}

Capabilities layout_capabilities(const std::string& layout) {
  if (layout == "headct" || layout == "brainmri" || layout == "br35h") return {true, false};
  if (layout == "isic" || layout == "colondb" || layout == "clinicdb" || layout == "kvasir" || layout == "endo")
    return {false, true};
  return {true, true};
}

std::string layout_description(const std::string& l) {
  if (l == "mvtec" || l == "mpdd" || l == "dtd")
    return "<cls>/train/good/*, <cls>/test/{good,<defect>}/*, <cls>/ground_truth/<defect>/*_mask.png";
  if (l == "visa") return "split_csv/1cls.csv with columns object,split,label,image,mask (paths relative to the root)";
  if (l == "btad") return "<cls>/train/ok/*, <cls>/test/{ok,ko}/*, <cls>/ground_truth/ko/*.png";
  if (l == "headct") return "brain/test/{good,<defect>}/* (no masks)";
  if (l == "brainmri") return "brain_tumor_dataset/{yes,no}/* (no = normal; no masks)";
  if (l == "br35h") return "{yes,no}/* (no = normal; no masks)";
  if (l == "isic") return "skin/test/<specie>/* with masks in skin/ISBI2016_ISIC_Part1_Test_GroundTruth/ (all anomalous)";
  if (l == "colondb" || l == "clinicdb" || l == "kvasir") return "images/* and masks/* (all anomalous)";
  if (l == "endo") return "<specie>/* and masks/* (all anomalous)";
  if (l == "folder") return "<cls>/{good,<defect>}/* with optional <cls>/ground_truth/<defect>/*";
  return "unknown layout";
}

Meta index_dataset(const std::string& layout, const std::string& root_str) {
  const fs::path root(root_str);
  if (!is_dir(root)) throw Error(root_str + ": dataset root is not a directory");
  Meta meta;
  meta.layout = layout;
  meta.capabilities = layout_capabilities(layout);
  if (layout == "mvtec" || layout == "mpdd" || layout == "dtd" || layout == "headct") {
    index_mvtec_like(root, meta, {"good"}, layout);
  } else if (layout == "btad") {
    index_mvtec_like(root, meta, {"ok", "good"}, layout);
  } else if (layout == "visa") {
    index_visa(root, meta);
  } else if (layout == "brainmri") {
    const std::string sub = is_dir(root / "brain_tumor_dataset") ? "brain_tumor_dataset" : "";
    index_species_dir(root, sub, "brain", {"no"}, {"yes", "no"}, {}, nullptr, meta);
  } else if (layout == "br35h") {
    index_species_dir(root, "", "brain", {"no"}, {"yes", "no"}, {}, nullptr, meta);
  } else if (layout == "isic") {
    const std::string base = is_dir(root / "skin") ? "skin" : "";
    const std::string gt = join_rel(base, "ISBI2016_ISIC_Part1_Test_GroundTruth");
    MaskFolder masks(root / gt, gt);
    index_species_dir(root, join_rel(base, "test"), "skin", {"good"}, {}, {}, &masks, meta);
  } else if (layout == "colondb" || layout == "clinicdb" || layout == "kvasir") {
    index_images_masks(root, meta, "colon");
  } else if (layout == "endo") {
    MaskFolder masks(root / "masks", "masks");
    index_species_dir(root, "", "colon", {"good"}, {}, {"masks"}, &masks, meta);
  } else if (layout == "folder") {
    index_folder(root, meta);
  } else {
    std::string all;
    for (const auto& n : layout_names()) all += (all.empty() ? "" : ", ") + n;
    throw Error("unknown dataset layout '" + layout + "' (expected one of: " + all + ")");
  }
  return meta;
}

}  // namespace zsad::data
