#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "mapped_file.h"
#include "model_file_builders.h"

namespace {

using slimrt::ErrorCategory;
using slimrt::MappedFile;

// A file in the test's temporary directory, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    path_ = ::testing::TempDir() + "mapped_file_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(MappedFile, MapsTheWholeFile) {
  const TempFile file("GGUF and more bytes");
  const MappedFile mapped = MappedFile::open(file.path());
  ASSERT_EQ(mapped.size(), 19u);
  EXPECT_EQ(std::memcmp(mapped.data(), "GGUF and more bytes", 19), 0);
  EXPECT_EQ(mapped.path(), file.path());
}

TEST(MappedFile, MapsAnEmptyFileToSizeZero) {
  const TempFile file("");
  EXPECT_EQ(MappedFile::open(file.path()).size(), 0u);
}

TEST(MappedFile, MovesOwnershipOfTheMapping) {
  const TempFile file("abc");
  MappedFile a = MappedFile::open(file.path());
  const uint8_t* data = a.data();
  MappedFile b = std::move(a);
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(a.size(), 0u);
  const TempFile other("xy");
  b = MappedFile::open(other.path());
  EXPECT_EQ(b.size(), 2u);
  EXPECT_EQ(b.data()[1], 'y');
}

TEST(MappedFile, RefusesMissingFilesAndDirectoriesAsIoErrors) {
  const std::string missing = ::testing::TempDir() + "no_such_model.gguf";
  slimrt::test::expect_error([&] { MappedFile::open(missing); }, ErrorCategory::kIo,
                             missing + ": cannot open: No such file or directory");
  const std::string directory = ::testing::TempDir();
  slimrt::test::expect_error([&] { MappedFile::open(directory); }, ErrorCategory::kIo,
                             directory + ": cannot open: Is a directory");
}

}  // namespace
