// The smallest program that uses fusedkd: one NKD loss and its gradient on a 2 x 3 batch.
#include <cstdio>

#include <fusedkd/fusedkd.hpp>

int main() {
  const float student[] = {1.0f, 2.0f, 0.5f, 0.1f, 0.2f, 3.0f};
  const float teacher[] = {0.5f, 2.5f, 0.0f, 0.0f, 1.0f, 2.0f};
  const int64_t labels[] = {1, 2};
  float loss = 0.0f;
  float grad[6];
  const fusedkd::Status s = fusedkd::cpu::nkd(
      fusedkd::matrix(student, 2, 3), fusedkd::matrix(teacher, 2, 3),
      fusedkd::Labels::index(labels), fusedkd::NkdOptions::imagenet(), &loss,
      fusedkd::matrix(grad, 2, 3));
  if (s != fusedkd::Status::kSuccess) {
    std::fprintf(stderr, "nkd failed: %s\n", fusedkd::status_string(s));
    return 1;
  }
  std::printf("NKD loss %.6f, dL/dz[0] = %.6f\n", loss, grad[0]);
  return 0;
}
