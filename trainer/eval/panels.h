#pragma once
// Visualisation panels: image | ground truth | anomaly-map overlay (jet, alpha 0.5) + colour bar
// labelled with the map's value range. Plain RGB images written with data/image.h.
#include <cstdint>
#include <string>

#include "data/image.h"

namespace zsad::eval {

// Jet colour map of t in [0,1] (clamped): 8-bit RGB.
void jet(double t, uint8_t rgb[3]);

// rgb: the image at size x size; mask: size*size 0/1 (or null: no ground truth, e.g. predict);
// map: size*size floats. lo/hi: colour range (lo == hi: the map's own min/max).
data::Image make_panel(const data::Image& rgb, const uint8_t* mask, const float* map, int size, double lo = 0,
                       double hi = 0);

// Draws text (digits, '.', '-', '+', 'e' and a few letters) in a 3x5 pixel font scaled by `scale`.
void draw_text(data::Image& img, int x, int y, const std::string& text, int scale, const uint8_t rgb[3]);

}  // namespace zsad::eval
