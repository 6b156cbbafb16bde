#pragma once
// 8-connected components of a binary ground-truth mask, as scipy.ndimage.label(mask,
// np.ones((3,3))) and skimage.measure.label(mask) (full connectivity) define them.
#include <cstdint>
#include <vector>

namespace zsad::results {

// labels (resized to h*w) receives 0 for background and 1..count for foreground pixels
// (nonzero mask); sizes receives the pixel count of each component (sizes[k-1] for label k).
// Returns the number of components.
uint32_t label_components(const uint8_t* mask, int64_t h, int64_t w, std::vector<uint32_t>& labels,
                          std::vector<uint32_t>& sizes);

}  // namespace zsad::results
