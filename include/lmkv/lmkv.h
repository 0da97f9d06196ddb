/* lmkv C API: a tiered KV cache with landmark attention, for inference engines.
 *
 * One lmkv_cache holds the KV cache of every layer of any number of sequences. Per layer and step
 * the engine appends the new tokens' keys and values (lmkv seals full blocks, computes or takes
 * their landmark keys and indexes them) and asks for the attention of the new tokens' queries
 * (retrieval of the top-k blocks per head, page-in through GPU, host and disk tiers, the grouped
 * softmax over the retrieved blocks plus the local window).
 *
 * Every call returns an lmkv_status; on failure lmkv_last_error() (per thread) tells why. No
 * C++ exception crosses this boundary. Null handles and pointers, closed handles and wrong sizes are
 * errors, never crashes.
 */
#ifndef LMKV_LMKV_H_
#define LMKV_LMKV_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LMKV_API __attribute__((visibility("default")))
#else
#define LMKV_API
#endif

typedef enum lmkv_status {
  LMKV_OK = 0,
  LMKV_INVALID_ARGUMENT = 1,
  LMKV_NOT_FOUND = 2,
  LMKV_ALREADY_EXISTS = 3,
  LMKV_CORRUPTION = 4,
  LMKV_IO_ERROR = 5,
  LMKV_RESOURCE_EXHAUSTED = 6,
  LMKV_FAILED_PRECONDITION = 7,
  LMKV_CUDA_ERROR = 8,
  LMKV_INTERNAL = 9
} lmkv_status;

typedef enum lmkv_dtype { LMKV_FLOAT16 = 1, LMKV_BFLOAT16 = 2 } lmkv_dtype;
typedef enum lmkv_device { LMKV_DEVICE_AUTO = 0, LMKV_DEVICE_CPU = 1, LMKV_DEVICE_GPU = 2 } lmkv_device;
typedef enum lmkv_landmark {
  LMKV_LANDMARK_MEAN = 0,           /* mean of the block's keys */
  LMKV_LANDMARK_REPRESENTATIVE = 1, /* the block's most central key */
  LMKV_LANDMARK_GIVEN = 2           /* passed by the caller to lmkv_append */
} lmkv_landmark;
typedef enum lmkv_write_policy { LMKV_WRITE_THROUGH = 0, LMKV_WRITE_BACK = 1 } lmkv_write_policy;
typedef enum lmkv_retrieval {
  LMKV_RETRIEVAL_PER_TOKEN = 0, /* each query token and head retrieves its own top_k blocks */
  LMKV_RETRIEVAL_PER_CHUNK = 1  /* the paper's offload mode: one top_k per head for the whole
                                   chunk of an lmkv_attend call (one page-in, a faster prefill) */
} lmkv_retrieval;

/* Configuration. Always start from lmkv_default_config(): struct_size lets later versions add
 * fields without breaking callers built against this one (fields past a caller's struct_size take
 * their defaults). */
typedef struct lmkv_config {
  size_t struct_size;          /* sizeof(lmkv_config), set by lmkv_default_config */
  uint32_t layers;             /* default 1 */
  uint32_t heads;              /* query heads, default 32 */
  uint32_t kv_heads;           /* KV heads (heads must be a multiple), default 32 */
  uint32_t head_dim;           /* default 128 */
  uint32_t block_tokens;       /* tokens per block, default 50 */
  lmkv_dtype dtype;            /* of keys and values, default LMKV_FLOAT16 */
  uint32_t top_k;              /* blocks retrieved per head (and token), default 32 */
  lmkv_device device;          /* where attention runs, default LMKV_DEVICE_AUTO */
  size_t gpu_capacity_bytes;   /* GPU tier (with a GPU), default 1 GiB */
  size_t host_capacity_bytes;  /* pinned host tier, default 256 MiB */
  const char* data_dir;        /* RocksDB directory (required), copied by lmkv_open */
  const char* index_backend;   /* "auto", "faiss-flat", "faiss-ivf", "faiss-hnsw", "gpu-fused",
                                  "faiss-gpu-flat", "faiss-gpu-ivf" */
  lmkv_landmark landmark;      /* default LMKV_LANDMARK_MEAN */
  lmkv_write_policy write_policy; /* default LMKV_WRITE_THROUGH */
  uint32_t reserved;           /* ignored (padding in 0.1.0) */
  /* Added after 0.1.0: */
  lmkv_retrieval retrieval;    /* default LMKV_RETRIEVAL_PER_TOKEN */
} lmkv_config;

typedef struct lmkv_cache lmkv_cache;

LMKV_API lmkv_config lmkv_default_config(void);

/* Opens (or reopens) a cache; *out receives the handle. */
LMKV_API lmkv_status lmkv_open(const lmkv_config* config, lmkv_cache** out);

/* How many blocks an append of `tokens` tokens to (sequence, layer) would seal now: the number of
 * landmark rows LMKV_LANDMARK_GIVEN expects in lmkv_append. */
LMKV_API lmkv_status lmkv_blocks_sealed_by(lmkv_cache* cache, uint64_t sequence, uint32_t layer,
                                           uint32_t tokens, uint32_t* out);

/* Appends `tokens` tokens of one layer: keys and values [tokens][kv_heads][head_dim] in the
 * configured dtype, host memory. landmarks: [sealed][kv_heads][head_dim] floats with
 * LMKV_LANDMARK_GIVEN when the call seals blocks (see lmkv_blocks_sealed_by), otherwise NULL. */
LMKV_API lmkv_status lmkv_append(lmkv_cache* cache, uint64_t sequence, uint32_t layer,
                                 uint32_t tokens, const void* keys, const void* values,
                                 const float* landmarks);

/* Attention of the last `tokens` appended tokens of a layer: queries and out are
 * [tokens][heads][head_dim] floats, in host or device memory (device pointers are copied on
 * `cuda_stream`, a cudaStream_t or NULL for the default stream). */
LMKV_API lmkv_status lmkv_attend(lmkv_cache* cache, uint64_t sequence, uint32_t layer,
                                 uint32_t tokens, const float* queries, float* out,
                                 void* cuda_stream);

/* Statistics as JSON (tiers, swap-in latency). Writes at most `capacity` bytes including the
 * terminating zero into `buffer` (which may be NULL with capacity 0); *needed receives the full
 * size including the zero. A buffer too small is LMKV_RESOURCE_EXHAUSTED. */
LMKV_API lmkv_status lmkv_stats_json(lmkv_cache* cache, char* buffer, size_t capacity,
                                     size_t* needed);

/* Makes every sealed block durable. */
LMKV_API lmkv_status lmkv_sync(lmkv_cache* cache);

/* Removes a sequence from every tier and the index. */
LMKV_API lmkv_status lmkv_erase_sequence(lmkv_cache* cache, uint64_t sequence);

/* Syncs, closes and frees the cache. The handle is invalid afterwards: using or closing it again
 * is an LMKV_INVALID_ARGUMENT error. */
LMKV_API lmkv_status lmkv_close(lmkv_cache* cache);

/* The message of this thread's last failed call ("" when none). Valid until the next call. */
LMKV_API const char* lmkv_last_error(void);

/* "0.1.0" */
LMKV_API const char* lmkv_version(void);

#ifdef __cplusplus
}
#endif

#endif /* LMKV_LMKV_H_ */
