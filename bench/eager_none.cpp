// bench/eager_none.cpp — the eager baseline when LibTorch is not found: absent.
#include "eager_f32.hpp"

namespace bench_eager {
bool available() { return false; }
void set_threads(int) {}
std::unique_ptr<Problem> make_problem(Loss, const Options&, const float*, const float*,
                                      const int64_t*, int64_t, int64_t) {
  return nullptr;
}
std::string check_against_reference(Loss, const Options&) { return ""; }
}  // namespace bench_eager
