// The weight readers against files written by python3-torch (tests/models/make_weight_files.py):
// every tensor, dtype, shape, stride, storage offset and storage sharing as Python reads them back.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "models/clip/weights.h"
#include "tests/models/weights_fixture.h"

namespace zsad::models {
namespace {

using test::expect_matches_python;
using test::weight_file;

TEST(WeightsDetect, ByContentNotName) {
  EXPECT_EQ(detect_weight_format(weight_file("state_dict.pth")), WeightFormat::kTorchSave);
  EXPECT_EQ(detect_weight_format(weight_file("state_dict_p4.pth")), WeightFormat::kTorchSave);
  EXPECT_EQ(detect_weight_format(weight_file("open_clip_like.pt")), WeightFormat::kTorchSave);
  EXPECT_EQ(detect_weight_format(weight_file("cops.pth")), WeightFormat::kTorchSave);
  EXPECT_EQ(detect_weight_format(weight_file("scripted.pt")), WeightFormat::kTorchScript);
  EXPECT_EQ(detect_weight_format(weight_file("scripted_cuda_fp16.pt")), WeightFormat::kTorchScript);
  EXPECT_EQ(detect_weight_format(weight_file("weights.safetensors")), WeightFormat::kSafetensors);
  // A misleading extension does not matter.
  const std::string renamed = weight_file("renamed_safetensors.pt");
  test::write_file_bytes(renamed, test::slurp(weight_file("weights.safetensors")));
  EXPECT_EQ(detect_weight_format(renamed), WeightFormat::kSafetensors);
  EXPECT_STREQ(weight_format_name(WeightFormat::kTorchScript), "torchscript");
}

TEST(WeightsTorchSave, OrderedDictStateDictAllDtypesViewsSharedStorage) {
  expect_matches_python(read_torch_save(weight_file("state_dict.pth")), "state_dict.pth", /*layout=*/true);
}

TEST(WeightsTorchSave, Protocol4And1Pickles) {
  expect_matches_python(read_torch_save(weight_file("state_dict_p4.pth")), "state_dict_p4.pth", true);
  expect_matches_python(read_torch_save(weight_file("state_dict_p1.pth")), "state_dict_p1.pth", true);
}

TEST(WeightsTorchSave, CudaTaggedStoragesLoadOnCpu) {
  expect_matches_python(read_torch_save(weight_file("state_dict_cuda.pth")), "state_dict_cuda.pth", true);
}

TEST(WeightsTorchSave, PickledWholeModuleGivesStateDictNames) {
  const StateDict sd = read_torch_save(weight_file("whole_module.pth"));
  expect_matches_python(sd, "whole_module.pth", false);
  EXPECT_EQ(sd.count("visual.transformer.resblocks.1.mlp.c_fc.weight"), 1u);
  EXPECT_EQ(sd.count("dropped"), 0u);  // non-persistent buffer
}

TEST(WeightsTorchSave, NestedCheckpointWithOneElementListsAndOptimizerState) {
  const StateDict sd = read_torch_save(weight_file("open_clip_like.pt"));
  expect_matches_python(sd, "open_clip_like.pt", true);
  // Spot checks of the flattening convention, independent of the Python flattening helper.
  EXPECT_EQ(sd.count("one_list.0"), 1u);
  EXPECT_EQ(sd.count("nested.a.c.1"), 1u);
  EXPECT_EQ(sd.count("tuple.0"), 1u);
  EXPECT_EQ(sd.count("5"), 1u);
  EXPECT_EQ(sd.count("int_keys.1099511627776"), 1u);
  EXPECT_EQ(sd.count("int_keys.-9223372036854775808"), 1u);
  EXPECT_EQ(sd.count("int_keys.9223372036854775807"), 1u);
  EXPECT_EQ(sd.count("int_keys.-5"), 1u);
  EXPECT_EQ(sd.count("state_dict.module.visual.proj"), 1u);
}

TEST(WeightsTorchSave, CopsCheckpointPromptLearner) {
  const StateDict sd = read_torch_save(weight_file("cops.pth"));
  expect_matches_python(sd, "cops.pth", true);
  const StateDict pl = strip_prefix(sd, "prompt_learner.");
  EXPECT_EQ(pl.size(), sd.size());
  ASSERT_EQ(pl.count("ctx_pos"), 1u);
  EXPECT_EQ(pl.at("ctx_pos").sizes(), (std::vector<int64_t>{1, 1, 14, 64}));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(pl.count("compound_prompts_text." + std::to_string(i)), 1u);
  EXPECT_EQ(pl.count("vae_decoder.2.weight"), 1u);
  EXPECT_EQ(pl.count("extractor.attn.in_proj_weight"), 1u);
}

TEST(WeightsTorchSave, ReadEntryForCheckpointImport) {
  const std::string path = weight_file("cops.pth");
  const StateDict pl = read_torch_save_entry(path, "prompt_learner");
  const StateDict all = read_torch_save(path);
  ASSERT_EQ(pl.size(), all.size());
  for (const auto& kv : pl) EXPECT_TRUE(kv.second.equal(all.at("prompt_learner." + kv.first))) << kv.first;
  test::expect_one_line_error([&] { read_torch_save_entry(path, "state_dict"); }, path,
                              "has no tensors under 'state_dict' (top-level entries with tensors: prompt_learner)");
  const std::string ckpt = weight_file("open_clip_like.pt");
  test::expect_one_line_error([&] { read_torch_save_entry(ckpt, "prompt_learner"); }, ckpt,
                              "(top-level entries with tensors: 5, int_keys, nested, one_list, optimizer, state_dict, tuple)");
  EXPECT_EQ(read_torch_save_entry(ckpt, "nested.a").size(), 3u);
}

TEST(WeightsTorchScript, Fp32Archive) {
  expect_matches_python(read_torchscript_weights(weight_file("scripted.pt")), "scripted.pt", false);
}

TEST(WeightsTorchScript, CudaTaggedFp16ArchiveKeepsHalf) {
  const StateDict sd = read_torchscript_weights(weight_file("scripted_cuda_fp16.pt"));
  expect_matches_python(sd, "scripted_cuda_fp16.pt", false);
  EXPECT_EQ(sd.at("visual.proj").scalar_type(), at::kHalf);
  EXPECT_EQ(sd.at("counter").scalar_type(), at::kLong);
}

TEST(WeightsTorchScript, OwnUnpicklerReadsTheArchiveToo) {
  // The fallback used when TorchScript cannot compile an archive's code: data.pkl through the
  // project's unpickler must give the same names and values as torch::jit::load.
  expect_matches_python(read_torch_save(weight_file("scripted_cuda_fp16.pt")), "scripted_cuda_fp16.pt", false);
  expect_matches_python(read_torch_save(weight_file("scripted.pt")), "scripted.pt", false);
}

TEST(WeightsSafetensors, HandWrittenFile) {
  expect_matches_python(read_safetensors(weight_file("weights.safetensors")), "weights.safetensors", false);
}

TEST(WeightsReadWeights, DispatchesOnContent) {
  expect_matches_python(read_weights(weight_file("scripted_cuda_fp16.pt")), "scripted_cuda_fp16.pt", false);
  expect_matches_python(read_weights(weight_file("state_dict.pth")), "state_dict.pth", true);
  expect_matches_python(read_weights(weight_file("weights.safetensors")), "weights.safetensors", false);
}

TEST(WeightsHelpers, StripPrefixAndUnwrapCheckpoint) {
  const StateDict ckpt = read_weights(weight_file("open_clip_like.pt"));
  const StateDict model = read_weights(weight_file("scripted.pt"));  // same module, same weights
  const StateDict unwrapped = unwrap_checkpoint(ckpt);
  ASSERT_EQ(unwrapped.size(), model.size());
  for (const auto& kv : model) {
    ASSERT_EQ(unwrapped.count(kv.first), 1u) << kv.first;
    EXPECT_TRUE(unwrapped.at(kv.first).equal(kv.second)) << kv.first;
  }
  const StateDict visual = strip_prefix(model, "visual.");
  EXPECT_EQ(visual.count("proj"), 1u);
  EXPECT_EQ(visual.count("positional_embedding"), 1u);
  EXPECT_EQ(visual.count("visual.proj"), 0u);
  EXPECT_EQ(visual.count("token_embedding.weight"), 0u);
  EXPECT_TRUE(strip_prefix(model, "nothing.").empty());
  // A plain state dict is left alone.
  EXPECT_EQ(unwrap_checkpoint(model).size(), model.size());
}

}  // namespace
}  // namespace zsad::models
