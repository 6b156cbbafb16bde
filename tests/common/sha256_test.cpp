#include "common/sha256.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "common/error.h"

namespace {

std::string run_python(const std::string& script) {
  const char* py = std::getenv("ZSAD_PYTHON");
  std::string cmd = std::string(py ? py : "/usr/bin/python3") + " -c '" + script + "'";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd;
  return out;
}

// FIPS 180-4 / NIST CSRC example vectors.
TEST(Sha256, NistVectors) {
  EXPECT_EQ(zsad::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(zsad::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(zsad::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  zsad::Sha256 h;
  std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.update(chunk);
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Every length around the 55/56/64-byte padding boundaries, fed in irregular pieces,
// against Python's hashlib on the same bytes.
TEST(Sha256, MatchesHashlibAcrossLengthsAndSplits) {
  std::mt19937 rng(7);
  std::string lengths, expected_cmd;
  std::vector<std::string> messages;
  for (int len = 0; len < 200; ++len) {
    std::string m(len, '\0');
    for (auto& c : m) c = static_cast<char>('a' + rng() % 26);
    messages.push_back(m);
  }
  std::ostringstream py;
  py << "import hashlib,random\nr=random.Random(0)\n";
  std::ostringstream all;
  for (auto& m : messages) all << m << "\\n";
  py << "import sys\nfor m in \"" << all.str() << "\".split(\"\\n\")[:-1]: print(hashlib.sha256(m.encode()).hexdigest())";
  std::string out = run_python(py.str());
  std::istringstream lines(out);
  for (size_t i = 0; i < messages.size(); ++i) {
    std::string want;
    ASSERT_TRUE(std::getline(lines, want)) << "python printed too few digests";
    zsad::Sha256 h;
    const std::string& m = messages[i];
    size_t pos = 0;
    while (pos < m.size()) {
      size_t take = std::min<size_t>(1 + rng() % 70, m.size() - pos);
      h.update(m.data() + pos, take);
      pos += take;
    }
    EXPECT_EQ(h.hex_digest(), want) << "length " << m.size();
  }
}

TEST(Sha256, FileDigestMatchesHashlibAndMissingFileNamesPath) {
  std::string path = testing::TempDir() + "/sha256_test.bin";
  {
    std::ofstream out(path, std::ios::binary);
    std::mt19937 rng(3);
    for (int i = 0; i < 3 * 1024 * 1024 + 17; ++i) out.put(static_cast<char>(rng() & 0xff));
  }
  std::string want = run_python("import hashlib;print(hashlib.sha256(open(\"" + path + "\",\"rb\").read()).hexdigest())");
  while (!want.empty() && (want.back() == '\n')) want.pop_back();
  EXPECT_EQ(zsad::sha256_file_hex(path), want);
  try {
    zsad::sha256_file_hex(path + ".missing");
    FAIL() << "expected an error";
  } catch (const zsad::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sha256_test.bin.missing"), std::string::npos);
  }
}

}  // namespace
