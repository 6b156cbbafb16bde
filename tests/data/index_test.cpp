// Every layout: a miniature tree in that layout (folder facts from shared/specs/evaluation.md
// §1.2) is indexed; classes, counts, labels, splits and mask pairing are checked, with stray
// files in mask folders that would shift a sorted-position pairing.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "data/check.h"
#include "data/index.h"
#include "test_util.h"

namespace zsad::data {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class Tree {
 public:
  explicit Tree(const fs::path& root) : root_(root) {}
  void image(const std::string& rel, int w = 12, int h = 10, uint8_t v = 100) {
    Image im(w, h, 3, v);
    im.at(0, 0, 0) = 255;
    fs::create_directories((root_ / rel).parent_path());
    write_image((root_ / rel).string(), im);
  }
  void grey(const std::string& rel, int w = 12, int h = 10) {
    Image im(w, h, 1, 60);
    fs::create_directories((root_ / rel).parent_path());
    write_image((root_ / rel).string(), im);
  }
  void mask(const std::string& rel, int w = 12, int h = 10, uint8_t v = 255) {
    Image m(w, h, 1, 0);
    for (int y = 2; y < 5; ++y)
      for (int x = 2; x < 6; ++x) m.at(x, y) = v;
    fs::create_directories((root_ / rel).parent_path());
    write_image((root_ / rel).string(), m);
  }
  void text(const std::string& rel, const std::string& s) { testing::write_text(root_ / rel, s); }
  std::string str() const { return root_.string(); }

 private:
  fs::path root_;
};

// Sample by image path; fails the test when absent.
const Sample& find(const Split& split, const std::string& img) {
  for (const auto& kv : split.samples)
    for (const auto& s : kv.second)
      if (s.img_path == img) return s;
  ADD_FAILURE() << "no sample " << img;
  static Sample none;
  return none;
}

size_t count_anomalous(const Split& s) {
  size_t n = 0;
  for (const auto& kv : s.samples)
    for (const auto& x : kv.second) n += x.anomaly;
  return n;
}

void expect_clean(const Meta& meta, const std::string& root) {
  const CheckReport r = check_dataset(meta, root, 2);
  EXPECT_TRUE(r.clean()) << format_report(r);
}

void build_mvtec_like(Tree& t, const std::vector<std::string>& classes) {
  for (const auto& c : classes) {
    for (int i = 0; i < 3; ++i) t.image(c + "/train/good/00" + std::to_string(i) + ".png");
    t.image(c + "/test/good/000.png");
    t.image(c + "/test/good/001.png");
    // broken: 000, 002 (no 001), masks exist for 000, 001, 002 plus strays that sort first.
    t.image(c + "/test/broken/000.png");
    t.image(c + "/test/broken/002.png");
    t.mask(c + "/ground_truth/broken/000_mask.png");
    t.mask(c + "/ground_truth/broken/001_mask.png");
    t.mask(c + "/ground_truth/broken/002_mask.png");
    t.mask(c + "/ground_truth/broken/0000_stray.png");
    t.text(c + "/ground_truth/broken/.DS_Store", "junk");
    t.image(c + "/test/crack/000.png");
    t.mask(c + "/ground_truth/crack/000_mask.png");
  }
}

void check_mvtec_like(const Meta& m, const std::vector<std::string>& classes, const std::string& layout) {
  EXPECT_EQ(m.layout, layout);
  EXPECT_EQ(m.train.classes, classes);
  EXPECT_EQ(m.test.classes, classes);
  EXPECT_EQ(m.train.size(), 3 * classes.size());
  EXPECT_EQ(m.test.size(), 5 * classes.size());
  EXPECT_EQ(count_anomalous(m.train), 0u);
  EXPECT_EQ(count_anomalous(m.test), 3 * classes.size());
  const std::string c = classes.back();
  const Sample& b2 = find(m.test, c + "/test/broken/002.png");
  EXPECT_EQ(b2.mask_path, c + "/ground_truth/broken/002_mask.png");
  EXPECT_EQ(b2.specie_name, "broken");
  EXPECT_EQ(b2.anomaly, 1);
  EXPECT_EQ(b2.cls_name, c);
  EXPECT_EQ(find(m.test, c + "/test/broken/000.png").mask_path, c + "/ground_truth/broken/000_mask.png");
  EXPECT_EQ(find(m.test, c + "/test/crack/000.png").mask_path, c + "/ground_truth/crack/000_mask.png");
  const Sample& g = find(m.test, c + "/test/good/001.png");
  EXPECT_EQ(g.anomaly, 0);
  EXPECT_EQ(g.mask_path, "");
  EXPECT_EQ(g.specie_name, "good");
  EXPECT_TRUE(m.capabilities.image_metrics);
  EXPECT_TRUE(m.capabilities.pixel_metrics);
}

TEST(IndexLayouts, MVTec) {
  TempDir d("mvtec");
  Tree t(d.path);
  build_mvtec_like(t, {"bottle", "grid"});
  const Meta m = index_dataset("mvtec", t.str());
  check_mvtec_like(m, {"bottle", "grid"}, "mvtec");
  expect_clean(m, t.str());
}

TEST(IndexLayouts, MPDD) {
  TempDir d("mpdd");
  Tree t(d.path);
  build_mvtec_like(t, {"bracket_black", "tubes"});
  const Meta m = index_dataset("mpdd", t.str());
  check_mvtec_like(m, {"bracket_black", "tubes"}, "mpdd");
}

TEST(IndexLayouts, DTDSynthetic) {
  TempDir d("dtd");
  Tree t(d.path);
  build_mvtec_like(t, {"Blotchy_099", "Woven_001"});
  const Meta m = index_dataset("dtd", t.str());
  check_mvtec_like(m, {"Blotchy_099", "Woven_001"}, "dtd");
}

TEST(IndexLayouts, VisAFromSplitCsv) {
  TempDir d("visa");
  Tree t(d.path);
  std::string csv = "object,split,label,image,mask\n";
  for (const std::string obj : {"candle", "pcb1"}) {
    for (int i = 0; i < 3; ++i) {
      const std::string img = obj + "/Data/Images/Normal/000" + std::to_string(i) + ".JPG";
      t.image(img, 16, 12);
      csv += obj + "," + (i < 2 ? "train" : "test") + ",normal," + img + ",\n";
    }
    for (int i = 0; i < 2; ++i) {
      const std::string img = obj + "/Data/Images/Anomaly/00" + std::to_string(i) + ".JPG";
      const std::string mask = obj + "/Data/Masks/Anomaly/00" + std::to_string(i) + ".png";
      t.image(img, 16, 12);
      t.mask(mask, 16, 12, static_cast<uint8_t>(i + 1));  // multi-class ids 1, 2
      csv += obj + ",test,anomaly," + img + "," + mask + "\n";
    }
  }
  t.text("candle/Data/Masks/Anomaly/000_extra.png", "stray");  // never referenced by the CSV
  t.text("split_csv/1cls.csv", csv);
  const Meta m = index_dataset("visa", t.str());
  EXPECT_EQ(m.train.classes, (std::vector<std::string>{"candle", "pcb1"}));
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"candle", "pcb1"}));
  EXPECT_EQ(m.train.size(), 4u);
  EXPECT_EQ(m.test.size(), 6u);
  EXPECT_EQ(count_anomalous(m.test), 4u);
  const Sample& a = find(m.test, "pcb1/Data/Images/Anomaly/001.JPG");
  EXPECT_EQ(a.mask_path, "pcb1/Data/Masks/Anomaly/001.png");
  EXPECT_EQ(a.specie_name, "");
  EXPECT_EQ(a.anomaly, 1);
  EXPECT_EQ(find(m.test, "candle/Data/Images/Normal/0002.JPG").anomaly, 0);
  // Multi-class id maps binarise to > 0.
  const Image mk = read_mask((d.path / "pcb1/Data/Masks/Anomaly/000.png").string());
  EXPECT_EQ(mk.at(3, 3), 255);
  EXPECT_EQ(mk.at(0, 0), 0);
  const Image rgb = read_image((d.path / "pcb1/Data/Images/Anomaly/001.JPG").string());
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.width, 16);
  expect_clean(m, t.str());
}

TEST(IndexLayouts, BTADOkKo) {
  TempDir d("btad");
  Tree t(d.path);
  for (const std::string c : {"01", "02"}) {
    const std::string ext = c == "01" ? ".bmp" : ".png";
    for (int i = 0; i < 2; ++i) t.image(c + "/train/ok/000" + std::to_string(i) + ext);
    t.image(c + "/test/ok/0000" + ext);
    t.image(c + "/test/ko/0000" + ext);
    t.image(c + "/test/ko/0003" + ext);
    t.mask(c + "/ground_truth/ko/0000.png");
    t.mask(c + "/ground_truth/ko/0001.png");  // orphan mask between the two images
    t.mask(c + "/ground_truth/ko/0003.png");
  }
  const Meta m = index_dataset("btad", t.str());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"01", "02"}));
  EXPECT_EQ(m.train.size(), 4u);
  EXPECT_EQ(m.test.size(), 6u);
  EXPECT_EQ(count_anomalous(m.test), 4u);
  EXPECT_EQ(find(m.test, "01/test/ko/0003.bmp").mask_path, "01/ground_truth/ko/0003.png");
  EXPECT_EQ(find(m.test, "01/test/ok/0000.bmp").anomaly, 0);
  EXPECT_EQ(find(m.test, "01/test/ok/0000.bmp").specie_name, "ok");
  EXPECT_EQ(find(m.train, "02/train/ok/0001.png").anomaly, 0);
  expect_clean(m, t.str());
}

TEST(IndexLayouts, HeadCTImageOnly) {
  TempDir d("headct");
  Tree t(d.path);
  for (int i = 0; i < 3; ++i) t.grey("brain/test/good/" + std::to_string(i) + ".png");
  for (int i = 0; i < 2; ++i) t.grey("brain/test/hemorrhage/" + std::to_string(100 + i) + ".png");
  const Meta m = index_dataset("headct", t.str());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"brain"}));
  EXPECT_EQ(m.train.size(), 0u);
  EXPECT_EQ(m.test.size(), 5u);
  EXPECT_EQ(count_anomalous(m.test), 2u);
  EXPECT_TRUE(m.capabilities.image_metrics);
  EXPECT_FALSE(m.capabilities.pixel_metrics);
  EXPECT_EQ(find(m.test, "brain/test/hemorrhage/101.png").mask_path, "");
  expect_clean(m, t.str());
}

TEST(IndexLayouts, BrainMRIYesNo) {
  TempDir d("brainmri");
  Tree t(d.path);
  t.image("brain_tumor_dataset/yes/Y1.jpg");
  t.image("brain_tumor_dataset/yes/Y2.JPG");
  t.image("brain_tumor_dataset/no/1 no.jpeg");
  const Meta m = index_dataset("brainmri", t.str());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"brain"}));
  EXPECT_EQ(m.test.size(), 3u);
  EXPECT_EQ(count_anomalous(m.test), 2u);
  EXPECT_EQ(find(m.test, "brain_tumor_dataset/no/1 no.jpeg").anomaly, 0);
  EXPECT_EQ(find(m.test, "brain_tumor_dataset/yes/Y2.JPG").specie_name, "yes");
  EXPECT_FALSE(m.capabilities.pixel_metrics);
  expect_clean(m, t.str());
}

TEST(IndexLayouts, Br35HIgnoresPred) {
  TempDir d("br35h");
  Tree t(d.path);
  t.image("yes/y0.jpg");
  t.image("no/no0.jpg");
  t.image("no/no1.jpg");
  t.image("pred/pred0.jpg");  // unlabelled Kaggle folder, not part of the benchmark
  const Meta m = index_dataset("br35h", t.str());
  EXPECT_EQ(m.test.size(), 3u);
  EXPECT_EQ(count_anomalous(m.test), 1u);
  EXPECT_EQ(find(m.test, "yes/y0.jpg").anomaly, 1);
  expect_clean(m, t.str());
}

TEST(IndexLayouts, ISICSegmentationSuffix) {
  TempDir d("isic");
  Tree t(d.path);
  for (const std::string id : {"ISIC_0000003", "ISIC_0000012", "ISIC_0000015"}) {
    t.image("skin/test/anomaly/" + id + ".jpg");
    t.mask("skin/ISBI2016_ISIC_Part1_Test_GroundTruth/" + id + "_Segmentation.png");
  }
  t.mask("skin/ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_0000001_Segmentation.png");  // stray, sorts first
  const Meta m = index_dataset("isic", t.str());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"skin"}));
  EXPECT_EQ(m.test.size(), 3u);
  EXPECT_EQ(count_anomalous(m.test), 3u);
  EXPECT_EQ(find(m.test, "skin/test/anomaly/ISIC_0000012.jpg").mask_path,
            "skin/ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_0000012_Segmentation.png");
  EXPECT_FALSE(m.capabilities.image_metrics);
  EXPECT_TRUE(m.capabilities.pixel_metrics);
  expect_clean(m, t.str());
}

void images_masks_case(const std::string& layout, const std::string& img_ext, const std::string& mask_ext) {
  TempDir d(layout);
  Tree t(d.path);
  for (const std::string n : {"1", "10", "2"}) {
    t.image("images/" + n + img_ext);
    t.mask("masks/" + n + mask_ext);
  }
  t.mask("masks/0" + mask_ext);  // stray mask without image
  const Meta m = index_dataset(layout, t.str());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"colon"}));
  EXPECT_EQ(m.test.size(), 3u);
  EXPECT_EQ(count_anomalous(m.test), 3u);
  EXPECT_EQ(find(m.test, "images/2" + img_ext).mask_path, "masks/2" + mask_ext);
  EXPECT_EQ(find(m.test, "images/10" + img_ext).mask_path, "masks/10" + mask_ext);
  EXPECT_FALSE(m.capabilities.image_metrics);
  expect_clean(m, t.str());
}

TEST(IndexLayouts, ColonDB) { images_masks_case("colondb", ".png", ".png"); }
TEST(IndexLayouts, ClinicDBTiff) { images_masks_case("clinicdb", ".tif", ".tif"); }
TEST(IndexLayouts, Kvasir) { images_masks_case("kvasir", ".jpg", ".png"); }

TEST(IndexLayouts, Endo) {
  TempDir d("endo");
  Tree t(d.path);
  t.image("polyps/a1.jpg");
  t.image("polyps/b2.jpg");
  t.mask("masks/a0.png");
  t.mask("masks/a1.png");
  t.mask("masks/b2.png");
  const Meta m = index_dataset("endo", t.str());
  EXPECT_EQ(m.test.size(), 2u);
  EXPECT_EQ(count_anomalous(m.test), 2u);
  EXPECT_EQ(find(m.test, "polyps/a1.jpg").mask_path, "masks/a1.png");
  EXPECT_EQ(find(m.test, "polyps/b2.jpg").mask_path, "masks/b2.png");
  expect_clean(m, t.str());
}

TEST(IndexLayouts, GenericFolder) {
  TempDir d("folder");
  Tree t(d.path);
  t.image("widget/good/a.png");
  t.image("widget/good/b.png");
  t.image("widget/dent/c.png");
  t.image("widget/dent/e.png");
  t.mask("widget/ground_truth/dent/d_mask.png");  // stray
  t.mask("widget/ground_truth/dent/c_mask.png");
  t.mask("widget/ground_truth/dent/e_mask.png");
  t.image("gadget/good/a.png");
  t.image("gadget/scratch/z.png");
  const Meta m = index_dataset("folder", t.str());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"gadget", "widget"}));
  EXPECT_EQ(m.test.size(), 6u);
  EXPECT_EQ(count_anomalous(m.test), 3u);
  EXPECT_EQ(find(m.test, "widget/dent/e.png").mask_path, "widget/ground_truth/dent/e_mask.png");
  EXPECT_EQ(find(m.test, "gadget/scratch/z.png").mask_path, "");
  EXPECT_TRUE(m.capabilities.pixel_metrics);
}

TEST(IndexLayouts, UnknownLayoutAndMissingRootNameTheProblem) {
  TempDir d("bad");
  try {
    index_dataset("nope", d.path.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  try {
    index_dataset("mvtec", (d.path / "absent").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent"), std::string::npos);
  }
}

TEST(MetaJson, RoundTripAndAbsolutePaths) {
  Meta m;
  m.layout = "mvtec";
  m.test.add({"c/test/a/0.png", "c/ground_truth/a/0_mask.png", "c", "a", 1});
  m.test.add({"/abs/c/test/good/1.png", "", "c", "good", 0});
  m.train.add({"c/train/good/2.png", "", "c", "good", 0});
  const Meta r = meta_from_json(meta_to_json(m), "mem");
  ASSERT_EQ(r.test.size(), 2u);
  EXPECT_EQ(r.test.samples.at("c")[0].mask_path, "c/ground_truth/a/0_mask.png");
  EXPECT_EQ(r.test.samples.at("c")[1].anomaly, 0);
  EXPECT_EQ(r.layout, "mvtec");
  EXPECT_EQ(resolve_path("/data/root", "c/x.png"), "/data/root/c/x.png");
  EXPECT_EQ(resolve_path("/data/root", "/abs/x.png"), "/abs/x.png");
}

TEST(MetaJson, ReadsReferenceGeneratorOutput) {
  // The shape AnomalyCLIP's generators write (json.dumps(info, indent=4)), written by Python.
  TempDir d("metapy");
  const std::string script =
      "import json,sys\n"
      "info={'train':{},'test':{'colon':[{'img_path':'/r/images/1.png','mask_path':'/r/masks/1.png',"
      "'cls_name':'colon','specie_name':'','anomaly':1}],'brain':[{'img_path':'no/a.jpg','cls_name':'brain',"
      "'mask_path':'','specie_name':'no','anomaly':0}]}}\n"
      "open(sys.argv[1],'w').write(json.dumps(info, indent=4)+'\\n')\n";
  testing::write_text(d.path / "gen.py", script);
  const auto r = testing::run_command(testing::python() + " " + (d.path / "gen.py").string() + " " +
                                      (d.path / "meta.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Meta m = read_meta((d.path / "meta.json").string());
  EXPECT_EQ(m.test.classes, (std::vector<std::string>{"colon", "brain"}));  // file order kept
  EXPECT_EQ(m.test.samples.at("colon")[0].img_path, "/r/images/1.png");
  EXPECT_EQ(m.test.samples.at("brain")[0].anomaly, 0);
  EXPECT_TRUE(m.capabilities.pixel_metrics);
}

}  // namespace
}  // namespace zsad::data
