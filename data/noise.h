#pragma once
// Gradient (Perlin) noise maps, shared by the synthetic-dataset generator and the APT anomaly
// synthesis. DRAEM's rand_perlin_2d: random unit gradients on a (res_y+1) x (res_x+1) lattice,
// quintic fade 6t^5 - 15t^4 + 10t^3, values roughly in [-0.7, 0.7].
#include <vector>

#include "data/rng.h"

namespace zsad::data {

// height x width map, row-major, `res_y` x `res_x` lattice cells over the whole map.
std::vector<float> perlin_2d(int height, int width, double res_y, double res_x, Rng& rng);

// Fractal sum of `octaves` Perlin maps, lattice doubling per octave, amplitude halving.
std::vector<float> fbm_2d(int height, int width, double res, int octaves, Rng& rng);

}  // namespace zsad::data
