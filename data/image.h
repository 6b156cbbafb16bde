#pragma once
// Image and mask IO. Decoding goes through OpenCV (PNG, JPEG, BMP, TIFF; 8-bit grey, RGB, RGBA,
// palette), always yielding RGB like PIL's convert('RGB'). EXIF orientation is ignored, as PIL's
// Image.open does. Files are checked for completeness first: OpenCV decodes a truncated JPEG
// partially without failing, so a JPEG without its end-of-image marker or a PNG without IEND
// is an error here. Every failure throws zsad::Error naming the file.
#include <cstdint>
#include <string>
#include <vector>

namespace zsad::data {

// 8-bit interleaved pixels, row-major, `channels` values per pixel (1 = grey, 3 = RGB).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int w, int h, int c, uint8_t fill = 0)
      : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c, fill) {}
  bool empty() const { return pixels.empty(); }
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  uint8_t& at(int x, int y, int c = 0) { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int x, int y, int c = 0) const { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

enum class ImageFormat { kUnknown, kPng, kJpeg, kBmp, kTiff };
ImageFormat sniff_format(const std::vector<uint8_t>& bytes);
const char* format_name(ImageFormat f);

std::vector<uint8_t> read_file_bytes(const std::string& path);

// Throws zsad::Error("<path>: ...") when the bytes are empty, of an unknown format or truncated.
void check_complete(const std::string& path, const std::vector<uint8_t>& bytes);

// Decode to 3-channel RGB.
Image read_image(const std::string& path);
Image decode_image(const std::string& path, const std::vector<uint8_t>& bytes);

// Decode a mask to 1 channel, binarised: any non-zero value (multi-class id maps such as
// VisA's, anti-aliased edges, colour masks) becomes 255, zero stays 0.
Image read_mask(const std::string& path);
Image decode_mask(const std::string& path, const std::vector<uint8_t>& bytes);

// PNG of a 1- or 3-channel image; deterministic bytes for identical pixels.
void write_png(const std::string& path, const Image& image, int compression = 3);
std::vector<uint8_t> encode_png(const Image& image, int compression = 3);

// Encode by extension (.png, .jpg/.jpeg, .bmp, .tif/.tiff, any case); JPEG at `jpeg_quality`.
std::vector<uint8_t> encode_image(const Image& image, const std::string& extension, int jpeg_quality = 95);
void write_image(const std::string& path, const Image& image, int jpeg_quality = 95);

// Call once in every loader worker thread: OpenCV's own TBB pool would oversubscribe the cores.
void set_single_threaded_decoding();

}  // namespace zsad::data
