// tests/fuzz/fuzz_case_reader.cpp — libFuzzer target for fusedkd-check's case reader: the
// input is a packed case folder, written to a scratch folder and run through check_case (the
// reader, the CPU backend, the comparison) as `fusedkd-check` would.
//
// Packed format (tests/fuzz/pack_case.py writes it): records of
//   1 byte  file index (mod 8): case.json, student.npy, teacher.npy, weak.npy, labels.npy,
//           loss.npy, grad_student.npy, grad_weak.npy
//   4 bytes little-endian length (cut to what is left)
//   the file's bytes
// Checked: no crash, no sanitizer report, no allocation beyond libFuzzer's -malloc_limit_mb (a
// case's buffers are bounded by its bytes), and the printed line is one short line.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#define FUSEDKD_CHECK_NO_MAIN
#include "main.cpp"  // tools/fusedkd-check/main.cpp: check_case, run_cpu

namespace {

const char* const kFiles[8] = {"case.json",  "student.npy", "teacher.npy",      "weak.npy",
                               "labels.npy", "loss.npy",    "grad_student.npy", "grad_weak.npy"};

/// A folder of its own for this process, made once.
const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr ? base : "/tmp") + "/fuzz_case_reader.XXXXXX";
    if (mkdtemp(&templ[0]) == nullptr) std::abort();
    return std::filesystem::path(templ);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path& dir = scratch_dir();
  for (const char* f : kFiles) std::filesystem::remove(dir / f);
  size_t at = 0;
  while (at + 5 <= size) {
    const unsigned index = data[at] % 8;
    uint32_t len = static_cast<uint32_t>(data[at + 1]) | static_cast<uint32_t>(data[at + 2]) << 8 |
                   static_cast<uint32_t>(data[at + 3]) << 16 | static_cast<uint32_t>(data[at + 4]) << 24;
    at += 5;
    if (len > size - at) len = static_cast<uint32_t>(size - at);
    std::ofstream out(dir / kFiles[index], std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + at), len);
    at += len;
  }
  std::string line;
  try {
    check_case(dir, run_cpu, line);
  } catch (const std::exception&) {
    // main() reports these as a FAIL line too; an allocation the case's size does not justify
    // shows up as a libFuzzer malloc-limit crash before it gets here.
  }
  const std::string shown = detail::shown(line, 1000);
  if (shown.size() > 1100 || shown.find('\n') != std::string::npos) std::abort();
  return 0;
}
