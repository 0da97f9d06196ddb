// The crash test's log: the writer appends the count of durable blocks after each sync.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lmkv::test {

// The last count in the log (0 when there is none yet).
inline uint64_t last_synced(const std::string& log) {
  FILE* f = std::fopen(log.c_str(), "r");
  if (!f) return 0;
  unsigned long long n = 0, last = 0;
  while (std::fscanf(f, "%llu", &n) == 1) last = n;
  std::fclose(f);
  return last;
}

}  // namespace lmkv::test
