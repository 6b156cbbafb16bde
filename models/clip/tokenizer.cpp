// OpenAI CLIP's simple_tokenizer.py in C++: clean (HTML unescape twice, collapse whitespace,
// lower-case), split with CLIP's pre-tokenisation pattern, byte-level encode, BPE by merge rank.
// Behaviour and coverage: docs/tokenizer.md.
#include "models/clip/tokenizer.h"

#include <zlib.h>

#include <unicode/locid.h>
#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/error.h"

namespace zsad::models {
namespace {

// --- HTML character references (Python's html.unescape) -------------------------------------
// Named references: the HTML 4.01 set (Python's html.entities.name2codepoint) plus &apos; and the
// upper-case legacy aliases, with the code points of the HTML5 table (which differs from HTML 4 for
// &lang; and &rang;). `legacy` marks the 106 names HTML5 also accepts without the semicolon.
// The ~2000 HTML5-only names (&NewLine;, &bigcup;, ...) are not decoded; see docs/tokenizer.md.
struct NamedReference {
  const char* name;
  char32_t code_point;
  bool legacy;
};
constexpr NamedReference kNamedReferences[] = {
    {"Aacute", 0xC1, true}, {"aacute", 0xE1, true}, {"Acirc", 0xC2, true}, {"acirc", 0xE2, true},
    {"acute", 0xB4, true}, {"AElig", 0xC6, true}, {"aelig", 0xE6, true}, {"Agrave", 0xC0, true},
    {"agrave", 0xE0, true}, {"alefsym", 0x2135, false}, {"Alpha", 0x391, false}, {"alpha", 0x3B1, false},
    {"AMP", 0x26, true}, {"amp", 0x26, true}, {"and", 0x2227, false}, {"ang", 0x2220, false},
    {"apos", 0x27, false}, {"Aring", 0xC5, true}, {"aring", 0xE5, true}, {"asymp", 0x2248, false},
    {"Atilde", 0xC3, true}, {"atilde", 0xE3, true}, {"Auml", 0xC4, true}, {"auml", 0xE4, true},
    {"bdquo", 0x201E, false}, {"Beta", 0x392, false}, {"beta", 0x3B2, false}, {"brvbar", 0xA6, true},
    {"bull", 0x2022, false}, {"cap", 0x2229, false}, {"Ccedil", 0xC7, true}, {"ccedil", 0xE7, true},
    {"cedil", 0xB8, true}, {"cent", 0xA2, true}, {"Chi", 0x3A7, false}, {"chi", 0x3C7, false},
    {"circ", 0x2C6, false}, {"clubs", 0x2663, false}, {"cong", 0x2245, false}, {"COPY", 0xA9, true},
    {"copy", 0xA9, true}, {"crarr", 0x21B5, false}, {"cup", 0x222A, false}, {"curren", 0xA4, true},
    {"Dagger", 0x2021, false}, {"dagger", 0x2020, false}, {"dArr", 0x21D3, false}, {"darr", 0x2193, false},
    {"deg", 0xB0, true}, {"Delta", 0x394, false}, {"delta", 0x3B4, false}, {"diams", 0x2666, false},
    {"divide", 0xF7, true}, {"Eacute", 0xC9, true}, {"eacute", 0xE9, true}, {"Ecirc", 0xCA, true},
    {"ecirc", 0xEA, true}, {"Egrave", 0xC8, true}, {"egrave", 0xE8, true}, {"empty", 0x2205, false},
    {"emsp", 0x2003, false}, {"ensp", 0x2002, false}, {"Epsilon", 0x395, false}, {"epsilon", 0x3B5, false},
    {"equiv", 0x2261, false}, {"Eta", 0x397, false}, {"eta", 0x3B7, false}, {"ETH", 0xD0, true},
    {"eth", 0xF0, true}, {"Euml", 0xCB, true}, {"euml", 0xEB, true}, {"euro", 0x20AC, false},
    {"exist", 0x2203, false}, {"fnof", 0x192, false}, {"forall", 0x2200, false}, {"frac12", 0xBD, true},
    {"frac14", 0xBC, true}, {"frac34", 0xBE, true}, {"frasl", 0x2044, false}, {"Gamma", 0x393, false},
    {"gamma", 0x3B3, false}, {"ge", 0x2265, false}, {"GT", 0x3E, true}, {"gt", 0x3E, true},
    {"hArr", 0x21D4, false}, {"harr", 0x2194, false}, {"hearts", 0x2665, false}, {"hellip", 0x2026, false},
    {"Iacute", 0xCD, true}, {"iacute", 0xED, true}, {"Icirc", 0xCE, true}, {"icirc", 0xEE, true},
    {"iexcl", 0xA1, true}, {"Igrave", 0xCC, true}, {"igrave", 0xEC, true}, {"image", 0x2111, false},
    {"infin", 0x221E, false}, {"int", 0x222B, false}, {"Iota", 0x399, false}, {"iota", 0x3B9, false},
    {"iquest", 0xBF, true}, {"isin", 0x2208, false}, {"Iuml", 0xCF, true}, {"iuml", 0xEF, true},
    {"Kappa", 0x39A, false}, {"kappa", 0x3BA, false}, {"Lambda", 0x39B, false}, {"lambda", 0x3BB, false},
    {"lang", 0x27E8, false}, {"laquo", 0xAB, true}, {"lArr", 0x21D0, false}, {"larr", 0x2190, false},
    {"lceil", 0x2308, false}, {"ldquo", 0x201C, false}, {"le", 0x2264, false}, {"lfloor", 0x230A, false},
    {"lowast", 0x2217, false}, {"loz", 0x25CA, false}, {"lrm", 0x200E, false}, {"lsaquo", 0x2039, false},
    {"lsquo", 0x2018, false}, {"LT", 0x3C, true}, {"lt", 0x3C, true}, {"macr", 0xAF, true},
    {"mdash", 0x2014, false}, {"micro", 0xB5, true}, {"middot", 0xB7, true}, {"minus", 0x2212, false},
    {"Mu", 0x39C, false}, {"mu", 0x3BC, false}, {"nabla", 0x2207, false}, {"nbsp", 0xA0, true},
    {"ndash", 0x2013, false}, {"ne", 0x2260, false}, {"ni", 0x220B, false}, {"not", 0xAC, true},
    {"notin", 0x2209, false}, {"nsub", 0x2284, false}, {"Ntilde", 0xD1, true}, {"ntilde", 0xF1, true},
    {"Nu", 0x39D, false}, {"nu", 0x3BD, false}, {"Oacute", 0xD3, true}, {"oacute", 0xF3, true},
    {"Ocirc", 0xD4, true}, {"ocirc", 0xF4, true}, {"OElig", 0x152, false}, {"oelig", 0x153, false},
    {"Ograve", 0xD2, true}, {"ograve", 0xF2, true}, {"oline", 0x203E, false}, {"Omega", 0x3A9, false},
    {"omega", 0x3C9, false}, {"Omicron", 0x39F, false}, {"omicron", 0x3BF, false}, {"oplus", 0x2295, false},
    {"or", 0x2228, false}, {"ordf", 0xAA, true}, {"ordm", 0xBA, true}, {"Oslash", 0xD8, true},
    {"oslash", 0xF8, true}, {"Otilde", 0xD5, true}, {"otilde", 0xF5, true}, {"otimes", 0x2297, false},
    {"Ouml", 0xD6, true}, {"ouml", 0xF6, true}, {"para", 0xB6, true}, {"part", 0x2202, false},
    {"permil", 0x2030, false}, {"perp", 0x22A5, false}, {"Phi", 0x3A6, false}, {"phi", 0x3C6, false},
    {"Pi", 0x3A0, false}, {"pi", 0x3C0, false}, {"piv", 0x3D6, false}, {"plusmn", 0xB1, true},
    {"pound", 0xA3, true}, {"Prime", 0x2033, false}, {"prime", 0x2032, false}, {"prod", 0x220F, false},
    {"prop", 0x221D, false}, {"Psi", 0x3A8, false}, {"psi", 0x3C8, false}, {"QUOT", 0x22, true},
    {"quot", 0x22, true}, {"radic", 0x221A, false}, {"rang", 0x27E9, false}, {"raquo", 0xBB, true},
    {"rArr", 0x21D2, false}, {"rarr", 0x2192, false}, {"rceil", 0x2309, false}, {"rdquo", 0x201D, false},
    {"real", 0x211C, false}, {"REG", 0xAE, true}, {"reg", 0xAE, true}, {"rfloor", 0x230B, false},
    {"Rho", 0x3A1, false}, {"rho", 0x3C1, false}, {"rlm", 0x200F, false}, {"rsaquo", 0x203A, false},
    {"rsquo", 0x2019, false}, {"sbquo", 0x201A, false}, {"Scaron", 0x160, false}, {"scaron", 0x161, false},
    {"sdot", 0x22C5, false}, {"sect", 0xA7, true}, {"shy", 0xAD, true}, {"Sigma", 0x3A3, false},
    {"sigma", 0x3C3, false}, {"sigmaf", 0x3C2, false}, {"sim", 0x223C, false}, {"spades", 0x2660, false},
    {"sub", 0x2282, false}, {"sube", 0x2286, false}, {"sum", 0x2211, false}, {"sup", 0x2283, false},
    {"sup1", 0xB9, true}, {"sup2", 0xB2, true}, {"sup3", 0xB3, true}, {"supe", 0x2287, false},
    {"szlig", 0xDF, true}, {"Tau", 0x3A4, false}, {"tau", 0x3C4, false}, {"there4", 0x2234, false},
    {"Theta", 0x398, false}, {"theta", 0x3B8, false}, {"thetasym", 0x3D1, false}, {"thinsp", 0x2009, false},
    {"THORN", 0xDE, true}, {"thorn", 0xFE, true}, {"tilde", 0x2DC, false}, {"times", 0xD7, true},
    {"trade", 0x2122, false}, {"Uacute", 0xDA, true}, {"uacute", 0xFA, true}, {"uArr", 0x21D1, false},
    {"uarr", 0x2191, false}, {"Ucirc", 0xDB, true}, {"ucirc", 0xFB, true}, {"Ugrave", 0xD9, true},
    {"ugrave", 0xF9, true}, {"uml", 0xA8, true}, {"upsih", 0x3D2, false}, {"Upsilon", 0x3A5, false},
    {"upsilon", 0x3C5, false}, {"Uuml", 0xDC, true}, {"uuml", 0xFC, true}, {"weierp", 0x2118, false},
    {"Xi", 0x39E, false}, {"xi", 0x3BE, false}, {"Yacute", 0xDD, true}, {"yacute", 0xFD, true},
    {"yen", 0xA5, true}, {"Yuml", 0x178, false}, {"yuml", 0xFF, true}, {"Zeta", 0x396, false},
    {"zeta", 0x3B6, false}, {"zwj", 0x200D, false}, {"zwnj", 0x200C, false},
};

// html.unescape maps these numeric references to Windows-1252 characters, as HTML5 does.
constexpr char32_t kWindows1252[32] = {
    0x20AC, 0x81,   0x201A, 0x192,  0x201E, 0x2026, 0x2020, 0x2021, 0x2C6, 0x2030, 0x160,
    0x2039, 0x152,  0x8D,   0x17D,  0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x2DC,  0x2122, 0x161,  0x203A, 0x153,  0x9D,   0x17E,  0x178};

const NamedReference* find_reference(const std::u32string& s, size_t begin, size_t length, bool with_semicolon) {
  static const auto* index = [] {
    auto* m = new std::unordered_map<std::string, const NamedReference*>();
    for (const auto& r : kNamedReferences) (*m)[r.name] = &r;
    return m;
  }();
  std::string name;
  for (size_t i = begin; i < begin + length; ++i) {
    if (s[i] > 0x7F) return nullptr;
    name.push_back(static_cast<char>(s[i]));
  }
  auto it = index->find(name);
  if (it == index->end()) return nullptr;
  return (with_semicolon || it->second->legacy) ? it->second : nullptr;
}

char32_t numeric_reference(char32_t n) {
  if (n == 0) return 0xFFFD;
  if (n == 0x0D) return 0x0D;
  if (n >= 0x80 && n <= 0x9F) return kWindows1252[n - 0x80];
  if ((n >= 0xD800 && n <= 0xDFFF) || n > 0x10FFFF) return 0xFFFD;
  // Python drops these "invalid code points" (controls, non-characters) entirely.
  if ((n >= 0x01 && n <= 0x08) || n == 0x0B || (n >= 0x0E && n <= 0x1F) || n == 0x7F ||
      (n >= 0xFDD0 && n <= 0xFDEF) || (n & 0xFFFE) == 0xFFFE)
    return 0;
  return n;
}

int hex_digit(char32_t c) {
  if (c >= U'0' && c <= U'9') return static_cast<int>(c - U'0');
  if (c >= U'a' && c <= U'f') return static_cast<int>(c - U'a' + 10);
  if (c >= U'A' && c <= U'F') return static_cast<int>(c - U'A' + 10);
  return -1;
}

// One pass of Python's html.unescape, i.e. re.sub of
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// with its replacement rules (longest legacy prefix for unknown names).
std::u32string html_unescape(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    size_t j = i + 1;
    if (j < n && s[j] == U'#') {
      const bool hex = j + 1 < n && (s[j + 1] == U'x' || s[j + 1] == U'X');
      const int base = hex ? 16 : 10;
      size_t k = hex ? j + 2 : j + 1;
      const size_t digits_begin = k;
      char32_t value = 0;  // saturates above U+10FFFF, where every value maps to U+FFFD
      while (k < n) {
        int d = hex_digit(s[k]);
        if (d < 0 || d >= base) break;
        value = value > 0x10FFFF ? value : value * base + static_cast<char32_t>(d);
        ++k;
      }
      if (k == digits_begin) {  // "&#" not followed by a number: not a reference
        out.push_back(s[i++]);
        continue;
      }
      if (k < n && s[k] == U';') ++k;
      if (char32_t c = numeric_reference(value)) out.push_back(c);
      i = k;
      continue;
    }
    size_t k = j;
    while (k < n && k - j < 32) {
      char32_t c = s[k];
      if (c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';')
        break;
      ++k;
    }
    if (k == j) {
      out.push_back(s[i++]);
      continue;
    }
    const size_t name_length = k - j;
    const bool semicolon = k < n && s[k] == U';';
    const size_t end = semicolon ? k + 1 : k;
    if (const NamedReference* r = find_reference(s, j, name_length, semicolon)) {
      out.push_back(r->code_point);
    } else {
      // Python tries prefixes of the matched text (semicolon included) from longest to length 2.
      const size_t matched = end - j;
      size_t x = matched - 1;
      for (; x >= 2; --x) {
        if (const NamedReference* p = find_reference(s, j, x, false)) {
          out.push_back(p->code_point);
          out.append(s, j + x, end - (j + x));
          break;
        }
      }
      if (x < 2) out.append(s, i, end - i);
    }
    i = end;
  }
  return out;
}

// Python's str.isspace(), which `re`'s \s and str.strip() use: bidirectional class WS, B or S, or
// general category Zs.
bool python_isspace(char32_t c) {
  const auto dir = u_charDirection(static_cast<UChar32>(c));
  return dir == U_WHITE_SPACE_NEUTRAL || dir == U_BLOCK_SEPARATOR || dir == U_SEGMENT_SEPARATOR ||
         u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}

// re.sub(r'\s+', ' ', text).strip()
std::u32string collapse_whitespace(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (char32_t c : s) {
    if (python_isspace(c)) {
      pending_space = !out.empty();
    } else {
      if (pending_space) out.push_back(U' ');
      pending_space = false;
      out.push_back(c);
    }
  }
  return out;
}

std::u32string utf8_to_utf32(const std::string& text) {
  // Invalid UTF-8 becomes U+FFFD (Python would never see such a str).
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
  std::u32string out;
  out.reserve(static_cast<size_t>(u.length()));
  for (int32_t i = 0; i < u.length(); i = u.moveIndex32(i, 1)) out.push_back(static_cast<char32_t>(u.char32At(i)));
  return out;
}

// OpenAI's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
// are mapped, in byte order, to U+0100.. . Returns the vocabulary order of the 256 byte symbols.
std::vector<int> bpe_byte_order() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<bool> seen(256, false);
  for (int b : bs) seen[b] = true;
  for (int b = 0; b < 256; ++b)
    if (!seen[b]) bs.push_back(b);
  return bs;
}

std::string code_point_utf8(char32_t c) {
  std::string out;
  icu::UnicodeString(static_cast<UChar32>(c)).toUTF8String(out);
  return out;
}

constexpr size_t kMergeCount = 49152 - 256 - 2;  // OpenAI: merges = lines[1 : 49152-256-2+1]
constexpr size_t kCacheLimit = 1 << 16;
constexpr const char* kPattern =
    R"(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)";

std::string read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) {
    throw Error("CLIP vocabulary '" + path + "': cannot open (" + std::strerror(errno ? errno : ENOENT) +
                "); expected bpe_simple_vocab_16e6.txt.gz");
  }
  std::string data;
  std::vector<char> buffer(1 << 16);
  int got = 0;
  while ((got = gzread(f, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) data.append(buffer.data(), got);
  int errnum = Z_OK;
  const char* message = gzerror(f, &errnum);
  const bool direct = gzdirect(f) == 1;
  std::string reason = (got < 0 || (errnum != Z_OK && errnum != Z_STREAM_END)) ? std::string(message) : "";
  gzclose(f);
  if (!reason.empty()) throw Error("CLIP vocabulary '" + path + "': corrupt or truncated gzip data (" + reason + ")");
  if (direct) throw Error("CLIP vocabulary '" + path + "': not a gzip file; expected bpe_simple_vocab_16e6.txt.gz");
  return data;
}

}  // namespace

struct Tokenizer::Impl {
  std::string byte_symbol[256];                 // byte -> its BPE symbol (UTF-8)
  std::unordered_map<std::string, int64_t> encoder;  // symbol -> id
  std::unordered_map<std::string, int> ranks;   // "first second" -> merge rank
  int64_t id_count = 0;
  std::unique_ptr<icu::RegexPattern> pattern;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;  // pre-token (UTF-8) -> ids

  std::vector<int64_t> bpe(const std::string& piece) const;
};

Tokenizer::Tokenizer(const std::string& vocab_path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  const std::string data = read_gzip(vocab_path);

  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kMergeCount);
  size_t line_no = 0, pos = 0;
  while (merges.size() < kMergeCount && pos <= data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    if (line_no >= 1) {  // line 0 is the "#version" header
      std::vector<std::string> parts;
      size_t a = pos;
      while (a < nl) {
        while (a < nl && std::strchr(" \t\r\v\f", data[a])) ++a;
        size_t b = a;
        while (b < nl && !std::strchr(" \t\r\v\f", data[b])) ++b;
        if (b > a) parts.emplace_back(data, a, b - a);
        a = b;
      }
      if (parts.size() != 2) {
        throw Error("CLIP vocabulary '" + vocab_path + "': line " + std::to_string(line_no + 1) +
                    " is not a merge of two symbols");
      }
      merges.emplace_back(std::move(parts[0]), std::move(parts[1]));
    }
    ++line_no;
    pos = nl + 1;
  }
  if (merges.size() < kMergeCount) {
    throw Error("CLIP vocabulary '" + vocab_path + "': has " + std::to_string(merges.size()) + " merges, expected " +
                std::to_string(kMergeCount));
  }

  // Same id order as OpenAI: 256 byte symbols, the same with "</w>", merges, SOT, EOT. Later
  // duplicates overwrite earlier ones, as Python's dict(zip(...)) does.
  const std::vector<int> order = bpe_byte_order();
  std::vector<std::string> vocab;
  vocab.reserve(2 * 256 + merges.size() + 2);
  for (int i = 0; i < 256; ++i) {
    const std::string sym = code_point_utf8(i < 188 ? static_cast<char32_t>(order[i]) : static_cast<char32_t>(256 + i - 188));
    m.byte_symbol[order[i]] = sym;
    vocab.push_back(sym);
  }
  for (int i = 0; i < 256; ++i) vocab.push_back(vocab[i] + "</w>");
  for (size_t r = 0; r < merges.size(); ++r) {
    vocab.push_back(merges[r].first + merges[r].second);
    m.ranks[merges[r].first + " " + merges[r].second] = static_cast<int>(r);
  }
  vocab.emplace_back("<|startoftext|>");
  vocab.emplace_back("<|endoftext|>");
  for (size_t id = 0; id < vocab.size(); ++id) m.encoder[vocab[id]] = static_cast<int64_t>(id);
  m.id_count = static_cast<int64_t>(vocab.size());
  m.cache["<|startoftext|>"] = {m.encoder.at("<|startoftext|>")};
  m.cache["<|endoftext|>"] = {m.encoder.at("<|endoftext|>")};

  UErrorCode status = U_ZERO_ERROR;
  m.pattern.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(kPattern), UREGEX_CASE_INSENSITIVE, status));
  if (U_FAILURE(status)) throw Error(std::string("tokenizer: ICU cannot compile the CLIP pattern: ") + u_errorName(status));
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int64_t> Tokenizer::Impl::bpe(const std::string& piece) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (auto it = cache.find(piece); it != cache.end()) return it->second;
  }
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (unsigned char b : piece) word.push_back(byte_symbol[b]);
  word.back() += "</w>";

  while (word.size() > 1) {
    int best = INT_MAX;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = ranks.find(word[i] + " " + word[i + 1]);
      if (it != ranks.end() && it->second < best) {
        best = it->second;
        best_at = i;
      }
    }
    if (best == INT_MAX) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i]);
        ++i;
      }
    }
    word.swap(merged);
  }

  std::vector<int64_t> ids;
  ids.reserve(word.size());
  for (const auto& sym : word) ids.push_back(encoder.at(sym));

  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() >= kCacheLimit) {
    cache.clear();
    cache["<|startoftext|>"] = {encoder.at("<|startoftext|>")};
    cache["<|endoftext|>"] = {encoder.at("<|endoftext|>")};
  }
  cache.emplace(piece, ids);
  return ids;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text) const {
  // OpenAI: whitespace_clean(basic_clean(text)).lower(); basic_clean's ftfy.fix_text is skipped.
  std::u32string cleaned = collapse_whitespace(html_unescape(html_unescape(utf8_to_utf32(text))));
  icu::UnicodeString lowered = icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(cleaned.data()),
                                                             static_cast<int32_t>(cleaned.size()));
  lowered.toLower(icu::Locale::getRoot());

  std::vector<int64_t> ids;
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> matcher(impl_->pattern->matcher(lowered, status));
  if (U_FAILURE(status)) throw Error(std::string("tokenizer: ICU regex matcher: ") + u_errorName(status));
  while (matcher->find(status) && U_SUCCESS(status)) {
    const int32_t begin = matcher->start(status), end = matcher->end(status);
    if (U_FAILURE(status)) break;
    std::string piece;
    lowered.tempSubStringBetween(begin, end).toUTF8String(piece);
    std::vector<int64_t> piece_ids = impl_->bpe(piece);
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  }
  if (U_FAILURE(status)) throw Error(std::string("tokenizer: ICU regex search failed: ") + u_errorName(status));
  return ids;
}

std::vector<int64_t> Tokenizer::tokenize(const std::string& text, int64_t context_length, bool* truncated) const {
  if (context_length < 1) throw Error("tokenizer: context_length must be at least 1, got " + std::to_string(context_length));
  std::vector<int64_t> ids;
  std::vector<int64_t> body = encode(text);
  ids.reserve(body.size() + 2);
  ids.push_back(kSot);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(kEot);
  const bool cut = static_cast<int64_t>(ids.size()) > context_length;
  if (cut) {
    ids.resize(static_cast<size_t>(context_length));
    ids.back() = kEot;
  }
  if (truncated) *truncated = cut;
  return ids;
}

std::vector<int64_t> Tokenizer::tokenize_padded(const std::string& text, int64_t context_length, bool* truncated) const {
  std::vector<int64_t> ids = tokenize(text, context_length, truncated);
  ids.resize(static_cast<size_t>(context_length), 0);
  return ids;
}

int64_t Tokenizer::vocab_size() const { return impl_->id_count; }

}  // namespace zsad::models
