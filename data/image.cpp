#include "data/image.h"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"

namespace zsad::data {

ImageFormat sniff_format(const std::vector<uint8_t>& b) {
  if (b.size() >= 8 && b[0] == 0x89 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G') return ImageFormat::kPng;
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::kJpeg;
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return ImageFormat::kBmp;
  if (b.size() >= 4 && ((b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) ||
                        (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42)))
    return ImageFormat::kTiff;
  return ImageFormat::kUnknown;
}

const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kBmp: return "BMP";
    case ImageFormat::kTiff: return "TIFF";
    default: return "unknown";
  }
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path + ": cannot open file (missing or unreadable)");
  const std::streamsize size = in.tellg();
  if (size < 0) throw Error(path + ": cannot determine file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw Error(path + ": read failed");
  return bytes;
}

namespace {

// Walks the marker segments (and the entropy-coded data after each SOS) up to EOI. Bytes after
// EOI (camera trailers, padding) are allowed; running out of data first means truncation.
bool jpeg_reaches_eoi(const std::vector<uint8_t>& b) {
  const size_t n = b.size();
  size_t i = 2;  // after SOI
  while (i < n) {
    if (b[i] != 0xFF) return false;
    while (i < n && b[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) return false;
    const uint8_t m = b[i++];
    if (m == 0xD9) return true;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // markers without a length
    if (i + 2 > n) return false;
    const size_t len = static_cast<size_t>(b[i]) << 8 | b[i + 1];
    if (len < 2) return false;
    i += len;
    if (m == 0xDA) {  // scan data: stuffed FF00 and RSTn belong to it
      while (i + 1 < n && !(b[i] == 0xFF && b[i + 1] != 0x00 && !(b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7))) ++i;
      if (i + 1 >= n) return false;
    }
  }
  return false;
}

// Walks the chunk list up to IEND; a chunk running past the end of the file means truncation.
bool png_reaches_iend(const std::vector<uint8_t>& b) {
  size_t i = 8;
  while (i + 12 <= b.size()) {
    const size_t len = static_cast<size_t>(b[i]) << 24 | static_cast<size_t>(b[i + 1]) << 16 |
                       static_cast<size_t>(b[i + 2]) << 8 | b[i + 3];
    if (len > b.size()) return false;
    if (std::memcmp(&b[i + 4], "IEND", 4) == 0) return true;
    i += 12 + len;
  }
  return false;
}

}  // namespace

void check_complete(const std::string& path, const std::vector<uint8_t>& b) {
  if (b.empty()) throw Error(path + ": empty file (0 bytes)");
  const ImageFormat f = sniff_format(b);
  switch (f) {
    case ImageFormat::kUnknown:
      throw Error(path + ": not a PNG, JPEG, BMP or TIFF image (unrecognised header)");
    case ImageFormat::kJpeg:
      if (!jpeg_reaches_eoi(b))
        throw Error(path + ": truncated JPEG (data ends before the end-of-image marker FFD9)");
      break;
    case ImageFormat::kPng:
      if (!png_reaches_iend(b)) throw Error(path + ": truncated PNG (data ends before the IEND chunk)");
      break;
    case ImageFormat::kBmp: {
      if (b.size() < 14) throw Error(path + ": truncated BMP (header incomplete)");
      const uint32_t declared = uint32_t(b[2]) | uint32_t(b[3]) << 8 | uint32_t(b[4]) << 16 | uint32_t(b[5]) << 24;
      if (declared > b.size())
        throw Error(path + ": truncated BMP (" + std::to_string(b.size()) + " bytes, header declares " +
                    std::to_string(declared) + ")");
      break;
    }
    case ImageFormat::kTiff:
      break;  // strip offsets are checked by the decoder itself
  }
}

namespace {

cv::Mat decode_raw(const std::string& path, const std::vector<uint8_t>& bytes, int flags) {
  check_complete(path, bytes);
  cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<uint8_t*>(bytes.data()));
  cv::Mat m;
  try {
    m = cv::imdecode(buf, flags);
  } catch (const cv::Exception& e) {
    throw Error(path + ": cannot decode " + format_name(sniff_format(bytes)) + " image: " + e.what());
  }
  if (m.empty()) throw Error(path + ": cannot decode " + std::string(format_name(sniff_format(bytes))) + " image (corrupt data)");
  return m;
}

Image from_mat(const cv::Mat& m) {
  Image out(m.cols, m.rows, m.channels());
  for (int y = 0; y < m.rows; ++y)
    std::memcpy(out.row(y), m.ptr<uint8_t>(y), static_cast<size_t>(m.cols) * m.channels());
  return out;
}

}  // namespace

Image decode_image(const std::string& path, const std::vector<uint8_t>& bytes) {
  cv::Mat bgr = decode_raw(path, bytes, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.depth() != CV_8U) throw Error(path + ": unsupported pixel depth (expected 8-bit)");
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return from_mat(rgb);
}

Image read_image(const std::string& path) { return decode_image(path, read_file_bytes(path)); }

Image decode_mask(const std::string& path, const std::vector<uint8_t>& bytes) {
  cv::Mat m = decode_raw(path, bytes, cv::IMREAD_UNCHANGED | cv::IMREAD_IGNORE_ORIENTATION);
  Image out(m.cols, m.rows, 1);
  const int ch = m.channels();
  const int colour = ch >= 3 ? 3 : 1;  // an alpha channel does not make a pixel anomalous
  for (int y = 0; y < m.rows; ++y) {
    uint8_t* o = out.row(y);
    for (int x = 0; x < m.cols; ++x) {
      bool on = false;
      if (m.depth() == CV_8U) {
        const uint8_t* p = m.ptr<uint8_t>(y) + static_cast<size_t>(x) * ch;
        if (colour == 3) {
          // PIL convert('L') (ITU-R 601-2, fixed point) then > 0, as the references do; p is BGR.
          const uint32_t l = (uint32_t(p[2]) * 19595u + uint32_t(p[1]) * 38470u + uint32_t(p[0]) * 7471u + 0x8000u) >> 16;
          on = l > 0;
        } else {
          on = p[0] > 0;
        }
      } else if (m.depth() == CV_16U) {
        const uint16_t* p = m.ptr<uint16_t>(y) + static_cast<size_t>(x) * ch;
        for (int c = 0; c < colour; ++c) on = on || p[c] > 0;
      } else {
        throw Error(path + ": unsupported mask pixel depth (expected 8- or 16-bit)");
      }
      o[x] = on ? 255 : 0;
    }
  }
  return out;
}

Image read_mask(const std::string& path) { return decode_mask(path, read_file_bytes(path)); }

std::vector<uint8_t> encode_png(const Image& image, int compression) {
  if (image.channels != 1 && image.channels != 3) throw Error("encode_png: expected 1 or 3 channels");
  cv::Mat m(image.height, image.width, image.channels == 1 ? CV_8UC1 : CV_8UC3,
            const_cast<uint8_t*>(image.pixels.data()));
  // A fresh Mat: converting into a header that aliases the caller's pixels would swap them in place.
  cv::Mat out;
  if (image.channels == 3) cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  else out = m;
  std::vector<uint8_t> bytes;
  if (!cv::imencode(".png", out, bytes, {cv::IMWRITE_PNG_COMPRESSION, compression}))
    throw Error("encode_png: OpenCV failed to encode");
  return bytes;
}

namespace {
void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot open for writing");
  const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = std::fclose(f) == 0 && n == bytes.size();
  if (!ok) throw Error(path + ": write failed");
}
}  // namespace

void write_png(const std::string& path, const Image& image, int compression) {
  write_all(path, encode_png(image, compression));
}

std::vector<uint8_t> encode_image(const Image& image, const std::string& extension, int jpeg_quality) {
  std::string ext;
  for (char c : extension) ext += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!ext.empty() && ext[0] != '.') ext = "." + ext;
  if (ext == ".png") return encode_png(image);
  if (ext != ".jpg" && ext != ".jpeg" && ext != ".bmp" && ext != ".tif" && ext != ".tiff")
    throw Error("encode_image: unsupported extension '" + extension + "' (png, jpg, jpeg, bmp, tif, tiff)");
  if (image.channels != 1 && image.channels != 3) throw Error("encode_image: expected 1 or 3 channels");
  cv::Mat m(image.height, image.width, image.channels == 1 ? CV_8UC1 : CV_8UC3, const_cast<uint8_t*>(image.pixels.data()));
  // A fresh Mat: converting into a header that aliases the caller's pixels would swap them in place.
  cv::Mat out;
  if (image.channels == 3) cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  else out = m;
  std::vector<uint8_t> bytes;
  std::vector<int> params;
  if (ext == ".jpg" || ext == ".jpeg") params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  if (!cv::imencode(ext, out, bytes, params)) throw Error("encode_image: OpenCV failed to encode " + ext);
  return bytes;
}

void write_image(const std::string& path, const Image& image, int jpeg_quality) {
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos) throw Error(path + ": no file extension to choose the image format");
  write_all(path, encode_image(image, path.substr(dot), jpeg_quality));
}

void set_single_threaded_decoding() { cv::setNumThreads(1); }

}  // namespace zsad::data
