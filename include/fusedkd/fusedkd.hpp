// fusedkd/fusedkd.hpp — everything: the four losses on the CPU, and on CUDA when compiled by nvcc.
#pragma once

#include "fusedkd/dkd.hpp"
#include "fusedkd/kd.hpp"
#include "fusedkd/nkd.hpp"
#include "fusedkd/uskd.hpp"

#if defined(__CUDACC__)
#include "fusedkd/cuda.cuh"
#endif
