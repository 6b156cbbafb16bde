#pragma once
// Dataset index: the AnomalyCLIP/CoPS meta.json interchange format and the indexers that build
// it from each benchmark's native folder layout.
//
//   {"train": {cls: [sample...]}, "test": {cls: [sample...]}}
//   sample = {img_path, mask_path ("" = none), cls_name, specie_name, anomaly 0|1}
//
// Paths are relative to the dataset root or absolute (several reference generators write
// absolute ones); resolve_path() accepts both. zsad adds one optional top-level key, "zsad",
// recording the layout and which metrics the dataset supports; the reference loaders only
// read "train"/"test" and ignore it.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zsad::data {

struct Sample {
  std::string img_path;
  std::string mask_path;   // "" when the sample has no mask
  std::string cls_name;
  std::string specie_name; // defect folder ("good"/"ok" for normals; "" for VisA and polyp sets)
  int anomaly = 0;
};

// What a dataset can be evaluated on: HeadCT/BrainMRI/Br35H have no masks (image metrics only);
// ISIC and the polyp sets are all-anomalous (pixel metrics only).
struct Capabilities {
  bool image_metrics = true;
  bool pixel_metrics = true;
};

struct Split {
  std::vector<std::string> classes;                     // in index order
  std::map<std::string, std::vector<Sample>> samples;   // by class
  size_t size() const;
  // All samples, classes in `classes` order: the global sample numbering used by loaders.
  std::vector<Sample> flat() const;
  void add(const Sample& s);
};

struct Meta {
  Split train;
  Split test;
  std::string layout;        // "" when read from a meta.json without the zsad key
  Capabilities capabilities;
  const Split& split(const std::string& name) const;  // "train" or "test"
};

Meta read_meta(const std::string& path);
void write_meta(const Meta& meta, const std::string& path);
std::string meta_to_json(const Meta& meta);
Meta meta_from_json(const std::string& text, const std::string& origin);

// Join root and a meta.json path: absolute paths are kept (os.path.join semantics).
std::string resolve_path(const std::string& root, const std::string& path);

// Layouts: mvtec, visa, btad, mpdd, dtd, headct, brainmri, br35h, isic, colondb, clinicdb,
// kvasir, endo, folder.
const std::vector<std::string>& layout_names();
Capabilities layout_capabilities(const std::string& layout);
// One-line description of the folder structure a layout expects.
std::string layout_description(const std::string& layout);

// Build the index of a dataset on disk. Throws zsad::Error for an unknown layout or a root that
// does not have the layout's structure. Masks are paired with images by file stem
// (NNN.png <-> NNN_mask.png / NNN.png / NNN_Segmentation.png), never by sorted position.
Meta index_dataset(const std::string& layout, const std::string& root);

// Capabilities inferred from the samples themselves (for a meta.json without the zsad key).
Capabilities infer_capabilities(const Meta& meta);

}  // namespace zsad::data
