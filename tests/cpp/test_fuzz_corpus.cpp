// Every file of the fuzz corpora (fuzz/corpus/TARGET/) through its fuzz target's function
// (fuzz/fuzz_targets.h), in the ordinary test suite and so under the sanitizer build too: the
// generated seeds must be accepted, and each crasher fuzzing once found (crash-*) must now be
// accepted or refused with slimrt::Error. The crashers' exact messages are tested beside the
// parsers' other errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "slimrt/error.h"

namespace {

namespace fs = std::filesystem;
using Target = void (*)(const uint8_t*, size_t);

struct Corpus {
  const char* name;
  Target run;
};
constexpr Corpus kCorpora[] = {
    {"safetensors", slimrt::fuzz::safetensors}, {"df11_file", slimrt::fuzz::df11_file},
    {"df11_arrays", slimrt::fuzz::df11_arrays}, {"gguf", slimrt::fuzz::gguf},
    {"config", slimrt::fuzz::config},
};

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(FuzzCorpus, EverySeedIsAcceptedAndEveryCrasherRefusedCleanly) {
  for (const Corpus& corpus : kCorpora) {
    const fs::path dir = fs::path(SLIMRT_FUZZ_CORPUS_DIR) / corpus.name;
    int seeds = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      const std::vector<uint8_t> bytes = read_file(entry.path());
      SCOPED_TRACE(entry.path().string());
      if (name.rfind("seed-", 0) == 0) {
        ++seeds;
        EXPECT_NO_THROW(corpus.run(bytes.data(), bytes.size()));
      } else {
        ASSERT_EQ(name.rfind("crash-", 0), 0u) << "neither a seed nor a crasher";
        try {
          corpus.run(bytes.data(), bytes.size());
        } catch (const slimrt::Error&) {
        }
      }
    }
    EXPECT_GE(seeds, 2) << corpus.name;
  }
}

}  // namespace
