// Landmark keys live in the store beside their blocks (durable with them), and an index is rebuilt
// from them when a store is reopened.
#pragma once

#include "index/landmark_index.h"
#include "kvstore/tiered_store.h"

namespace lmkv {

// Stores the landmark keys of blocks `block_nos` of `head` (n rows of index.dim() floats) in the
// store, then adds them to the index. The store is written first: a crash in between leaves
// landmarks that the next rebuild picks up, never an index entry without its stored key.
Status add_landmarks(TieredStore& store, LandmarkIndex& index, const HeadKey& head,
                     const uint64_t* block_nos, const float* keys, size_t n);

// Adds every landmark stored in `store` to `index` (normally empty), one batch per head.
// A stored key whose dimension differs from the index's is an InvalidArgument error.
Status rebuild_index(TieredStore& store, LandmarkIndex& index);

}  // namespace lmkv
