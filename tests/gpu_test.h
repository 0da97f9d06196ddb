// What the GPU tests share: a fixture that skips (reported as skipped) without a CUDA device, and
// an assertion on a CUDA runtime call. Only for builds with CUDA.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "kvstore/cuda_util.h"

#define ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call

namespace lmkv::test {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

}  // namespace lmkv::test
