#include "data/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "common/error.h"
#include "data/noise.h"
#include "data/rng.h"

namespace fs = std::filesystem;

namespace zsad::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Rgb {
  float r = 0, g = 0, b = 0;
};

Rgb mix(Rgb a, Rgb b, float t) { return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t}; }
Rgb scale(Rgb a, float s) { return {a.r * s, a.g * s, a.b * s}; }
Rgb add(Rgb a, float s) { return {a.r + s, a.g + s, a.b + s}; }
float luma(Rgb a) { return 0.299f * a.r + 0.587f * a.g + 0.114f * a.b; }

Rgb jitter(Rgb c, double amount, Rng& rng) {
  return {static_cast<float>(c.r + rng.uniform(-amount, amount)), static_cast<float>(c.g + rng.uniform(-amount, amount)),
          static_cast<float>(c.b + rng.uniform(-amount, amount))};
}

// Float canvas with an "allowed" region for defects (the object, or everything for textures)
// and the background a missing part reveals.
struct Canvas {
  int size = 0;
  std::vector<Rgb> px;
  std::vector<Rgb> background;
  std::vector<uint8_t> allowed;
  double defect_scale = 1.0;  // multiplies every defect's extent (radii, lengths, widths)
  Rgb& at(int x, int y) { return px[static_cast<size_t>(y) * size + x]; }
};

// Rotated/shifted coordinates relative to the image centre, in units of the image size.
struct Frame {
  double cx, cy, c, s;
  void local(int x, int y, int size, double& u, double& v) const {
    const double dx = (x + 0.5) / size - cx, dy = (y + 0.5) / size - cy;
    u = c * dx + s * dy;
    v = -s * dx + c * dy;
  }
};

Frame random_frame(Rng& rng, double shift, double max_angle_deg) {
  const double a = rng.uniform(-max_angle_deg, max_angle_deg) * kPi / 180.0;
  return {0.5 + rng.uniform(-shift, shift), 0.5 + rng.uniform(-shift, shift), std::cos(a), std::sin(a)};
}

// ------------------------------------------------------------------------------------------
// Textures

void texture_woven(Canvas& cv, Rng& rng) {
  const int S = cv.size;
  const Frame f = random_frame(rng, 0.5, 4);
  const double threads = rng.uniform(12, 16);
  const Rgb warp = jitter({0.58f, 0.52f, 0.42f}, 0.03, rng), weft = jitter({0.42f, 0.40f, 0.36f}, 0.03, rng);
  const std::vector<float> fine = perlin_2d(S, S, S / 6.0, S / 6.0, rng);
  const std::vector<float> slow = perlin_2d(S, S, 3, 3, rng);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      double u, v;
      f.local(x, y, S, u, v);
      const double gu = u * threads + 100, gv = v * threads + 100;
      const int i = static_cast<int>(std::floor(gu)), j = static_cast<int>(std::floor(gv));
      const double fu = gu - i, fv = gv - j;
      const bool over = ((i + j) & 1) == 0;
      const double prof = over ? std::sin(kPi * fv) : std::sin(kPi * fu);
      const size_t k = static_cast<size_t>(y) * S + x;
      Rgb c = scale(over ? warp : weft, static_cast<float>(0.6 + 0.4 * prof));
      c = add(c, 0.06f * fine[k] + 0.05f * slow[k]);
      cv.px[k] = c;
    }
}

void texture_grain(Canvas& cv, Rng& rng) {
  const int S = cv.size;
  const Frame f = random_frame(rng, 0.5, 8);
  const std::vector<float> warp = fbm_2d(S, S, 2, 4, rng);
  const std::vector<float> streak = perlin_2d(S, S, 48, 3, rng);
  const double rings = rng.uniform(9, 13);
  const Rgb light = jitter({0.74f, 0.55f, 0.34f}, 0.03, rng), dark = jitter({0.47f, 0.30f, 0.16f}, 0.03, rng);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      double u, v;
      f.local(x, y, S, u, v);
      const size_t k = static_cast<size_t>(y) * S + x;
      const double t = 0.5 + 0.5 * std::sin(2 * kPi * (v * rings + 0.8 * warp[k]));
      Rgb c = mix(light, dark, static_cast<float>(t * t));
      cv.px[k] = add(c, 0.05f * streak[k]);
    }
}

void texture_marble(Canvas& cv, Rng& rng) {
  const int S = cv.size;
  const std::vector<float> n = fbm_2d(S, S, 2, 5, rng);
  const double fu = rng.uniform(2, 4), fv = rng.uniform(0.5, 2), phase = rng.uniform(0, 1);
  const Rgb base = jitter({0.88f, 0.87f, 0.84f}, 0.02, rng), vein = jitter({0.36f, 0.38f, 0.42f}, 0.03, rng);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const size_t k = static_cast<size_t>(y) * S + x;
      const double u = (x + 0.5) / S, v = (y + 0.5) / S;
      const double s = std::abs(std::sin(2 * kPi * (u * fu + v * fv + 1.6 * n[k] + phase)));
      const double t = std::pow(1.0 - s, 10.0);
      cv.px[k] = add(mix(base, vein, static_cast<float>(0.8 * t)), 0.04f * n[k]);
    }
}

void texture_mesh(Canvas& cv, Rng& rng) {
  const int S = cv.size;
  const Frame f = random_frame(rng, 0.5, 4);
  const double cells = rng.uniform(8, 10);
  const double half = rng.uniform(0.10, 0.14);  // wire half-width in cells
  const std::vector<float> n = fbm_2d(S, S, 4, 3, rng);
  const Rgb wire = jitter({0.72f, 0.73f, 0.76f}, 0.03, rng), back = jitter({0.16f, 0.15f, 0.14f}, 0.02, rng);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      double u, v;
      f.local(x, y, S, u, v);
      const double gu = u * cells + 100, gv = v * cells + 100;
      const double du = std::abs(gu - std::floor(gu + 0.5)), dv = std::abs(gv - std::floor(gv + 0.5));
      const size_t k = static_cast<size_t>(y) * S + x;
      const double d = std::min(du, dv);
      Rgb c = back;
      if (d < half) c = scale(wire, static_cast<float>(0.75 + 0.25 * std::cos(kPi * 0.5 * d / half)));
      cv.px[k] = add(c, 0.05f * n[k]);
    }
}

void texture_terrazzo(Canvas& cv, Rng& rng) {
  const int S = cv.size;
  const std::vector<float> n = fbm_2d(S, S, 3, 3, rng);
  const Rgb base = jitter({0.76f, 0.73f, 0.68f}, 0.02, rng);
  for (size_t k = 0; k < cv.px.size(); ++k) cv.px[k] = add(base, 0.05f * n[k]);
  const Rgb palette[] = {{0.55f, 0.30f, 0.26f}, {0.30f, 0.30f, 0.32f}, {0.93f, 0.92f, 0.90f}, {0.70f, 0.58f, 0.38f}};
  const int chips = S * S / 300;
  const double unit = S / 256.0;
  for (int i = 0; i < chips; ++i) {
    const double cx = rng.uniform(0, S), cy = rng.uniform(0, S);
    const double rx = rng.uniform(1.5, 4.5) * unit, ry = rng.uniform(1.5, 4.5) * unit;
    const Rgb col = jitter(palette[rng.below(4)], 0.04, rng);
    for (int y = std::max(0, int(cy - ry - 1)); y <= std::min(S - 1, int(cy + ry + 1)); ++y)
      for (int x = std::max(0, int(cx - rx - 1)); x <= std::min(S - 1, int(cx + rx + 1)); ++x) {
        const double dx = (x + 0.5 - cx) / rx, dy = (y + 0.5 - cy) / ry;
        if (dx * dx + dy * dy <= 1) cv.at(x, y) = col;
      }
  }
}

// ------------------------------------------------------------------------------------------
// Objects: an inside test in object-local coordinates (units of the image size) plus colours.

void render_object(Canvas& cv, Rng& rng, Rgb bg, const std::function<bool(double, double, Rgb&)>& inside,
                   const Frame& f) {
  const int S = cv.size;
  const std::vector<float> bgn = fbm_2d(S, S, 3, 3, rng);
  const std::vector<float> fine = perlin_2d(S, S, S / 8.0, S / 8.0, rng);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const size_t k = static_cast<size_t>(y) * S + x;
      cv.background[k] = add(bg, 0.04f * bgn[k]);
      double u, v;
      f.local(x, y, S, u, v);
      Rgb c;
      if (inside(u, v, c)) {
        const float light = static_cast<float>(1.0 + 0.35 * (-u - v));
        cv.px[k] = add(scale(c, light), 0.03f * fine[k]);
        cv.allowed[k] = 1;
      } else {
        cv.px[k] = cv.background[k];
        cv.allowed[k] = 0;
      }
    }
}

void object_washer(Canvas& cv, Rng& rng) {
  const double ro = rng.uniform(0.30, 0.33), ri = rng.uniform(0.12, 0.14);
  const Rgb metal = jitter({0.70f, 0.70f, 0.72f}, 0.03, rng);
  render_object(cv, rng, jitter({0.20f, 0.22f, 0.28f}, 0.02, rng),
                [&](double u, double v, Rgb& c) {
                  const double r = std::sqrt(u * u + v * v);
                  c = scale(metal, static_cast<float>(0.85 + 0.3 * (r - ri) / (ro - ri) * (ro - r) / (ro - ri) * 2));
                  return r <= ro && r >= ri;
                },
                random_frame(rng, 0.04, 180));
}

void object_capsule(Canvas& cv, Rng& rng) {
  const double half = rng.uniform(0.26, 0.29), rad = rng.uniform(0.12, 0.14);
  const Rgb a = jitter({0.78f, 0.18f, 0.16f}, 0.03, rng), b = jitter({0.90f, 0.88f, 0.84f}, 0.02, rng);
  render_object(cv, rng, jitter({0.62f, 0.64f, 0.66f}, 0.02, rng),
                [&](double u, double v, Rgb& c) {
                  const double cu = std::max(-half + rad, std::min(half - rad, u));
                  const double d = std::sqrt((u - cu) * (u - cu) + v * v);
                  c = scale(u < 0 ? a : b, static_cast<float>(1.0 - 0.5 * (d / rad) * (d / rad) * 0.5));
                  return d <= rad;
                },
                random_frame(rng, 0.03, 10));
}

void object_gear(Canvas& cv, Rng& rng) {
  const double r = rng.uniform(0.25, 0.27), tooth = 0.045, hole = 0.07;
  const int teeth = 12;
  const Rgb brass = jitter({0.80f, 0.64f, 0.28f}, 0.03, rng);
  render_object(cv, rng, jitter({0.84f, 0.84f, 0.82f}, 0.02, rng),
                [&](double u, double v, Rgb& c) {
                  const double d = std::sqrt(u * u + v * v);
                  const double a = std::atan2(v, u);
                  const double ph = std::fmod(a / (2 * kPi) * teeth + 100.0, 1.0);
                  const double outer = r + ((ph > 0.25 && ph < 0.75) ? tooth : 0.0);
                  c = scale(brass, d < r - 0.05 ? 0.92f : 1.0f);
                  return d <= outer && d >= hole;
                },
                random_frame(rng, 0.04, 180));
}

void object_bracket(Canvas& cv, Rng& rng) {
  const double arm = rng.uniform(0.30, 0.34), thick = rng.uniform(0.11, 0.13), hr = 0.035;
  const Rgb paint = jitter({0.18f, 0.18f, 0.20f}, 0.02, rng);
  render_object(cv, rng, jitter({0.86f, 0.85f, 0.80f}, 0.02, rng),
                [&](double u, double v, Rgb& c) {
                  // L shape: vertical bar [-arm/2, -arm/2+thick] x [-arm/2, arm/2], horizontal bar at the bottom.
                  const double x0 = -arm / 2;
                  const bool vert = u >= x0 && u <= x0 + thick && v >= -arm / 2 && v <= arm / 2;
                  const bool horz = v >= arm / 2 - thick && v <= arm / 2 && u >= x0 && u <= arm / 2;
                  const double h1 = std::hypot(u - (x0 + thick / 2), v + arm / 4);
                  const double h2 = std::hypot(u - arm / 4, v - (arm / 2 - thick / 2));
                  c = paint;
                  return (vert || horz) && h1 > hr && h2 > hr;
                },
                random_frame(rng, 0.04, 12));
}

void object_chip(Canvas& cv, Rng& rng) {
  const double body = rng.uniform(0.19, 0.21), pin_len = 0.07, pin_w = 0.022;
  const int pins = 5;
  const Rgb black = jitter({0.12f, 0.12f, 0.13f}, 0.02, rng), silver = jitter({0.78f, 0.78f, 0.80f}, 0.03, rng);
  render_object(cv, rng, jitter({0.10f, 0.38f, 0.20f}, 0.02, rng),
                [&](double u, double v, Rgb& c) {
                  if (std::abs(u) <= body && std::abs(v) <= body) {
                    c = black;
                    return true;
                  }
                  const double au = std::abs(u), av = std::abs(v);
                  const double along = au > av ? v : u, across = std::max(au, av);
                  if (across > body && across <= body + pin_len && std::min(au, av) <= body * 0.9) {
                    const double pitch = 2 * body * 0.9 / pins;
                    const double pos = std::fmod(along + body * 0.9 + 10 * pitch, pitch) - pitch / 2;
                    if (std::abs(pos) <= pin_w) {
                      c = silver;
                      return true;
                    }
                  }
                  return false;
                },
                random_frame(rng, 0.03, 6));
}

// ------------------------------------------------------------------------------------------
// Defects: build a shape, intersect with the allowed region, change exactly those pixels.

using Shape = std::vector<uint8_t>;

void stamp_disc(Shape& m, int S, double cx, double cy, double r) {
  for (int y = std::max(0, int(cy - r - 1)); y <= std::min(S - 1, int(cy + r + 1)); ++y)
    for (int x = std::max(0, int(cx - r - 1)); x <= std::min(S - 1, int(cx + r + 1)); ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= r * r) m[static_cast<size_t>(y) * S + x] = 1;
    }
}

// A blob: radius modulated by low-frequency angular noise.
void stamp_blob(Shape& m, int S, double cx, double cy, double r, double rough, Rng& rng) {
  double amp[4], ph[4];
  for (int i = 0; i < 4; ++i) {
    amp[i] = rng.uniform(0, rough) / (i + 1);
    ph[i] = rng.uniform(0, 2 * kPi);
  }
  const double rmax = r * (1 + rough * 2.1);
  for (int y = std::max(0, int(cy - rmax - 1)); y <= std::min(S - 1, int(cy + rmax + 1)); ++y)
    for (int x = std::max(0, int(cx - rmax - 1)); x <= std::min(S - 1, int(cx + rmax + 1)); ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      const double a = std::atan2(dy, dx);
      double rr = r;
      for (int i = 0; i < 4; ++i) rr *= 1 + amp[i] * std::sin((i + 2) * a + ph[i]);
      if (dx * dx + dy * dy <= rr * rr) m[static_cast<size_t>(y) * S + x] = 1;
    }
}

// A random point inside the allowed region (falls back to the centre region).
void pick_point(const Canvas& cv, Rng& rng, double margin, double& x, double& y) {
  const int S = cv.size;
  for (int t = 0; t < 200; ++t) {
    x = rng.uniform(margin * S, (1 - margin) * S);
    y = rng.uniform(margin * S, (1 - margin) * S);
    if (cv.allowed[static_cast<size_t>(int(y)) * S + int(x)]) return;
  }
  x = y = S / 2.0;
}

Shape shape_for(const std::string& kind, const Canvas& cv, Rng& rng) {
  const int S = cv.size;
  const double k = cv.defect_scale;
  const double unit = S / 256.0 * k;
  Shape m(static_cast<size_t>(S) * S, 0);
  double cx, cy;
  pick_point(cv, rng, 0.12, cx, cy);
  if (kind == "scratch") {
    const double len = std::min(0.9, rng.uniform(0.18, 0.4) * k) * S, a = rng.uniform(0, 2 * kPi);
    const double x0 = cx - 0.5 * len * std::cos(a), y0 = cy - 0.5 * len * std::sin(a);
    const double x2 = cx + 0.5 * len * std::cos(a), y2 = cy + 0.5 * len * std::sin(a);
    const double bend = rng.uniform(-0.25, 0.25) * len;
    const double x1 = cx - bend * std::sin(a), y1 = cy + bend * std::cos(a);
    const double w = rng.uniform(0.8, 1.8) * unit;
    for (int i = 0; i <= 600; ++i) {
      const double t = i / 600.0;
      const double px = (1 - t) * (1 - t) * x0 + 2 * (1 - t) * t * x1 + t * t * x2;
      const double py = (1 - t) * (1 - t) * y0 + 2 * (1 - t) * t * y1 + t * t * y2;
      stamp_disc(m, S, px, py, w);
    }
  } else if (kind == "crack") {
    const int branches = static_cast<int>(rng.range(1, 3));
    for (int b = 0; b < branches; ++b) {
      double x = cx, y = cy, a = rng.uniform(0, 2 * kPi);
      const int steps = static_cast<int>(rng.range(10, 22));
      const double w = rng.uniform(0.9, 1.7) * unit;
      for (int s = 0; s < steps; ++s) {
        a += rng.normal(0, 0.55);
        const double step = rng.uniform(2.5, 5.0) * unit;
        for (int i = 0; i < 8; ++i) stamp_disc(m, S, x + step * i / 8 * std::cos(a), y + step * i / 8 * std::sin(a), w);
        x += step * std::cos(a);
        y += step * std::sin(a);
      }
    }
  } else if (kind == "hole") {
    stamp_blob(m, S, cx, cy, rng.uniform(0.03, 0.06) * k * S, 0.15, rng);
  } else if (kind == "stain") {
    stamp_blob(m, S, cx, cy, rng.uniform(0.05, 0.10) * k * S, 0.35, rng);
  } else if (kind == "contamination") {
    const int specks = static_cast<int>(rng.range(3, 7));
    for (int i = 0; i < specks; ++i) {
      const double x = cx + rng.normal(0, 0.05 * k * S), y = cy + rng.normal(0, 0.05 * k * S);
      if (rng.bernoulli(0.3)) {  // a fibre
        double fx = x, fy = y, a = rng.uniform(0, 2 * kPi);
        for (int s = 0; s < 30; ++s) {
          a += rng.normal(0, 0.25);
          fx += unit * std::cos(a);
          fy += unit * std::sin(a);
          stamp_disc(m, S, fx, fy, 0.8 * unit);
        }
      } else {
        stamp_blob(m, S, x, y, rng.uniform(1.8, 4.5) * unit, 0.3, rng);
      }
    }
  } else if (kind == "colour_shift") {
    stamp_blob(m, S, cx, cy, rng.uniform(0.07, 0.13) * k * S, 0.3, rng);
  } else if (kind == "missing_part") {
    // A bite out of the object: a disc centred near the object's edge.
    const double r = rng.uniform(0.08, 0.14) * k * S;
    double ex = cx, ey = cy;
    for (int t = 0; t < 400; ++t) {
      const double x = rng.uniform(0, S), y = rng.uniform(0, S);
      const int xi = int(x), yi = int(y);
      const bool in = cv.allowed[static_cast<size_t>(yi) * S + xi];
      const bool edge = in && ((xi > 0 && !cv.allowed[static_cast<size_t>(yi) * S + xi - 1]) ||
                               (xi + 1 < S && !cv.allowed[static_cast<size_t>(yi) * S + xi + 1]) ||
                               (yi > 0 && !cv.allowed[static_cast<size_t>(yi - 1) * S + xi]) ||
                               (yi + 1 < S && !cv.allowed[static_cast<size_t>(yi + 1) * S + xi]));
      if (edge) {
        ex = x;
        ey = y;
        break;
      }
    }
    stamp_blob(m, S, ex, ey, r, 0.2, rng);
  } else {
    throw Error("unknown synthetic defect kind '" + kind + "'");
  }
  for (size_t k = 0; k < m.size(); ++k) m[k] &= cv.allowed[k];
  return m;
}

Rgb contaminant_colour(Rng& rng) {
  const Rgb pal[] = {{0.10f, 0.65f, 0.20f}, {0.15f, 0.30f, 0.85f}, {0.85f, 0.15f, 0.70f}, {0.95f, 0.55f, 0.05f},
                     {0.05f, 0.05f, 0.05f}, {0.95f, 0.95f, 0.30f}};
  return jitter(pal[rng.below(6)], 0.05, rng);
}

// Applies `kind` to the canvas; returns the changed-pixel mask (empty when nothing landed).
Shape apply_defect(Canvas& cv, const std::string& kind, Rng& rng) {
  const int S = cv.size;
  const size_t min_area = std::max<size_t>(6, static_cast<size_t>(S) * S / 4000);
  Shape m;
  for (int attempt = 0; attempt < 30; ++attempt) {
    m = shape_for(kind, cv, rng);
    size_t area = 0;
    for (uint8_t v : m) area += v;
    if (area >= min_area) break;
  }
  if (kind == "scratch") {
    const float alpha = static_cast<float>(rng.uniform(0.55, 0.85));
    const float tint = static_cast<float>(rng.uniform(-0.05, 0.05));
    for (size_t k = 0; k < m.size(); ++k)
      if (m[k]) {
        const Rgb o = cv.px[k];
        const Rgb target = luma(o) < 0.5f ? Rgb{0.95f + tint, 0.95f, 0.95f - tint} : Rgb{0.08f, 0.08f, 0.08f};
        cv.px[k] = mix(o, target, alpha);
      }
  } else if (kind == "crack") {
    const float dark = static_cast<float>(rng.uniform(0.12, 0.3));
    for (size_t k = 0; k < m.size(); ++k)
      if (m[k]) cv.px[k] = luma(cv.px[k]) < 0.3f ? add(scale(cv.px[k], 0.3f), 0.45f) : scale(cv.px[k], dark);
  } else if (kind == "hole") {
    const Rgb inner = jitter({0.05f, 0.05f, 0.05f}, 0.03, rng);
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const size_t k = static_cast<size_t>(y) * S + x;
        if (!m[k]) continue;
        // The bright rim of the hole's wall on the upper edge reads as depth.
        const bool rim = y > 0 && !m[k - S];
        cv.px[k] = luma(cv.px[k]) < 0.3f ? Rgb{0.85f, 0.85f, 0.82f} : (rim ? Rgb{0.6f, 0.6f, 0.6f} : inner);
      }
  } else if (kind == "stain") {
    const Rgb pal[] = {{0.45f, 0.30f, 0.12f}, {0.75f, 0.65f, 0.20f}, {0.20f, 0.20f, 0.22f}, {0.55f, 0.15f, 0.10f}};
    const Rgb col = jitter(pal[rng.below(4)], 0.04, rng);
    const float alpha = static_cast<float>(rng.uniform(0.4, 0.65));
    for (size_t k = 0; k < m.size(); ++k)
      if (m[k]) cv.px[k] = mix(cv.px[k], col, alpha);
  } else if (kind == "contamination") {
    const Rgb col = contaminant_colour(rng);
    for (size_t k = 0; k < m.size(); ++k)
      if (m[k]) cv.px[k] = mix(cv.px[k], col, 0.9f);
  } else if (kind == "colour_shift") {
    float g[3];
    for (auto& v : g) v = static_cast<float>((rng.bernoulli(0.5) ? 1 : -1) * rng.uniform(0.18, 0.32));
    for (size_t k = 0; k < m.size(); ++k)
      if (m[k]) {
        Rgb& p = cv.px[k];
        p = {p.r * (1 + g[0]) + 0.12f * g[0], p.g * (1 + g[1]) + 0.12f * g[1], p.b * (1 + g[2]) + 0.12f * g[2]};
      }
  } else if (kind == "missing_part") {
    for (size_t k = 0; k < m.size(); ++k)
      if (m[k]) cv.px[k] = cv.background[k];
  }
  return m;
}

// ------------------------------------------------------------------------------------------

using Painter = void (*)(Canvas&, Rng&);

struct PresetImpl {
  SynthPreset info;
  std::vector<Painter> painters;
  bool objects;
};

const std::vector<PresetImpl>& presets_impl() {
  static const std::vector<PresetImpl> p = {
      {{"textures", "woven, wood grain, marble, wire mesh and terrazzo surfaces; defects anywhere",
        {"woven", "grain", "marble", "mesh", "terrazzo"},
        {"scratch", "crack", "hole", "stain", "contamination", "colour_shift"}},
       {texture_woven, texture_grain, texture_marble, texture_mesh, texture_terrazzo},
       false},
      {{"objects", "washers, capsules, gears, brackets and chips on plain backgrounds; defects on the object",
        {"washer", "capsule", "gear", "bracket", "chip"},
        {"scratch", "crack", "hole", "stain", "contamination", "colour_shift", "missing_part"}},
       {object_washer, object_capsule, object_gear, object_bracket, object_chip},
       true},
  };
  return p;
}

const PresetImpl& preset_impl(const std::string& name) {
  for (const auto& p : presets_impl())
    if (p.info.name == name) return p;
  std::string all;
  for (const auto& p : presets_impl()) all += (all.empty() ? "" : ", ") + p.info.name;
  throw Error("unknown synthetic preset '" + name + "' (expected one of: " + all + ")");
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

uint8_t quantise(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 1.0f) return 255;
  return static_cast<uint8_t>(static_cast<int>(v * 255.0f + 0.5f));
}

}  // namespace

const std::vector<SynthPreset>& synth_presets() {
  static const std::vector<SynthPreset> list = [] {
    std::vector<SynthPreset> v;
    for (const auto& p : presets_impl()) v.push_back(p.info);
    return v;
  }();
  return list;
}

const SynthPreset& synth_preset(const std::string& name) { return preset_impl(name).info; }

SynthImage render_synth_image(const std::string& preset, int class_index, const std::string& defect, int size,
                              uint64_t seed, double defect_scale) {
  const PresetImpl& p = preset_impl(preset);
  if (class_index < 0 || class_index >= static_cast<int>(p.painters.size()))
    throw Error("synthetic preset '" + preset + "': class index " + std::to_string(class_index) + " out of range");
  if (size < 32) throw Error("synthetic image size " + std::to_string(size) + " too small (minimum 32)");
  if (!(defect_scale >= 0.25 && defect_scale <= 4.0))
    throw Error("synthetic defect scale " + std::to_string(defect_scale) + " out of range [0.25, 4]");
  Rng rng(seed);
  Canvas cv;
  cv.size = size;
  cv.defect_scale = defect_scale;
  const size_t n = static_cast<size_t>(size) * size;
  cv.px.resize(n);
  cv.background.resize(n);
  cv.allowed.assign(n, 1);
  p.painters[class_index](cv, rng);
  if (!p.objects) cv.allowed.assign(n, 1);
  Shape m(n, 0);
  if (!defect.empty()) m = apply_defect(cv, defect, rng);
  SynthImage out{Image(size, size, 3), Image(size, size, 1), Image(size, size, 1)};
  for (size_t k = 0; k < n; ++k) {
    out.image.pixels[3 * k] = quantise(cv.px[k].r);
    out.image.pixels[3 * k + 1] = quantise(cv.px[k].g);
    out.image.pixels[3 * k + 2] = quantise(cv.px[k].b);
    out.mask.pixels[k] = m[k] ? 255 : 0;
    out.object.pixels[k] = cv.allowed[k] ? 255 : 0;
  }
  return out;
}

int synth_anomalous_count(int n, double fraction) {
  if (n <= 1) return 0;
  fraction = std::min(0.5, std::max(0.3, fraction));
  int a = static_cast<int>(std::lround(n * fraction));
  return std::max(1, std::min(a, n - 1));
}

std::string synth_signature(const SynthOptions& o) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "preset=%s seed=%llu size=%d train_per_class=%d test_per_class=%d anomaly_fraction=%g defect_scale=%g",
                o.preset.c_str(), static_cast<unsigned long long>(o.seed), o.size, o.train_per_class, o.test_per_class,
                o.anomaly_fraction, o.defect_scale);
  return buf;
}

Meta synthesize_dataset(const SynthOptions& o, const std::string& out_dir) {
  const PresetImpl& p = preset_impl(o.preset);
  if (o.size < 32 || o.size > 4096) throw Error("synthetic image size " + std::to_string(o.size) + " out of range [32, 4096]");
  if (o.train_per_class < 0 || o.test_per_class < 2)
    throw Error("synthetic dataset needs >= 2 test images per class (got " + std::to_string(o.test_per_class) + ")");
  struct Job {
    int cls;
    std::string defect;
    std::string image_path, mask_path;
    uint64_t seed;
  };
  std::vector<Job> jobs;
  const uint64_t preset_key = name_hash(o.preset);
  char name[64];
  for (int c = 0; c < static_cast<int>(p.info.classes.size()); ++c) {
    const std::string cls = p.info.classes[c];
    uint64_t serial = 0;
    for (int i = 0; i < o.train_per_class; ++i) {
      std::snprintf(name, sizeof name, "%03d.png", i);
      jobs.push_back({c, "", cls + "/train/good/" + name, "", mix_seed(o.seed, preset_key, c, serial++)});
    }
    const int n_anom = synth_anomalous_count(o.test_per_class, o.anomaly_fraction);
    for (int i = 0; i < o.test_per_class - n_anom; ++i) {
      std::snprintf(name, sizeof name, "%03d.png", i);
      jobs.push_back({c, "", cls + "/test/good/" + name, "", mix_seed(o.seed, preset_key, c, serial++)});
    }
    std::map<std::string, int> per_defect;
    const size_t nd = p.info.defects.size();
    for (int i = 0; i < n_anom; ++i) {
      const std::string& d = p.info.defects[(i + c) % nd];
      const int k = per_defect[d]++;
      std::snprintf(name, sizeof name, "%03d", k);
      jobs.push_back({c, d, cls + "/test/" + d + "/" + name + ".png", cls + "/ground_truth/" + d + "/" + name + "_mask.png",
                      mix_seed(o.seed, preset_key, c, serial++)});
    }
  }
  // Rendered into a sibling staging folder and moved into place at the end: an interrupted
  // generation leaves <out>.partial (removed by the next one), never a half dataset in <out>.
  fs::path dest = fs::path(out_dir).lexically_normal();
  if (dest.filename().empty()) dest = dest.parent_path();  // "dir/" -> "dir"
  const fs::path root = dest.string() + ".partial";
  fs::remove_all(root);
  for (const auto& j : jobs) {
    fs::create_directories((root / j.image_path).parent_path());
    if (!j.mask_path.empty()) fs::create_directories((root / j.mask_path).parent_path());
  }
  std::atomic<size_t> next{0};
  std::vector<std::string> errors(jobs.size());
  auto worker = [&]() {
    set_single_threaded_decoding();
    for (size_t i = next++; i < jobs.size(); i = next++) {
      const Job& j = jobs[i];
      try {
        const SynthImage im = render_synth_image(o.preset, j.cls, j.defect, o.size, j.seed, o.defect_scale);
        write_png((root / j.image_path).string(), im.image, o.png_compression);
        if (!j.mask_path.empty()) write_png((root / j.mask_path).string(), im.mask, o.png_compression);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  const int nt = std::max(1, o.threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < nt; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw Error(e);
  Meta meta = index_dataset("mvtec", root.string());  // this generation's classes only
  {
    std::ofstream sig(root / kSynthSignatureFile);
    sig << synth_signature(o) << "\n";
    if (!sig) throw Error((root / kSynthSignatureFile).string() + ": cannot write");
  }
  fs::create_directories(dest);
  std::vector<fs::path> staged;
  for (const auto& e : fs::directory_iterator(root)) staged.push_back(e.path().filename());
  for (const auto& name : staged)  // nothing is moved unless everything fits
    if (fs::exists(dest / name))
      throw Error((dest / name).string() + " already exists: " + dest.string() +
                  " holds files of another generation (remove them, or generate elsewhere)");
  for (const auto& name : staged) fs::rename(root / name, dest / name);
  fs::remove_all(root);
  write_meta(meta, (dest / "meta.json").string());  // last: meta.json marks a complete dataset
  return meta;
}

}  // namespace zsad::data
