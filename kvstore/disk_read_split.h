// How a page-in divides its disk reads between the read threads.
//
// Neighbouring blocks of a head, written in order, sit next to each other in RocksDB's blob files,
// and a MultiGet merges their reads into one large read. A run of at least kMinRunBlocks
// neighbours is therefore read by one thread, in batches of up to kMaxRunBlocks: on the GPU
// machine 256 neighbouring blocks came in faster as 8 merged reads of 32 blocks than as 32 reads
// of 8. Other blocks each cost a read of their own, and the disk serves them fastest with many in
// flight: they are dealt, in key order, into as many batches as there are threads, with at least
// kMinScatteredBatch blocks in each so that small page-ins do not pay a thread hand-off per block.
// (Tasks of 1 to 4 blocks taken by whichever thread is free were slower while every MultiGet read
// its table blocks again, and no faster once those were cached. The order does not matter: raw
// reads of the store's files, each thread taking a slice of the sorted offsets or every 32nd one,
// ran alike.)
#pragma once

#include <cstddef>
#include <vector>

#include "kvstore/block.h"

namespace lmkv {

inline constexpr size_t kMinRunBlocks = 8;
inline constexpr size_t kMaxRunBlocks = 32;
inline constexpr size_t kMinScatteredBatch = 4;

// Batches of positions in `sorted_keys` (in disk key order), each position in exactly one batch,
// each batch in ascending order. threads >= 1.
std::vector<std::vector<size_t>> split_disk_reads(const std::vector<BlockKey>& sorted_keys,
                                                  size_t threads);

}  // namespace lmkv
