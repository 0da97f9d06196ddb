/* A toy inference engine in C that keeps every layer's KV cache in lmkv.
 *
 * The model is a stack of attention layers with random weights (the point is the cache, not the
 * text): each token's embedding goes through every layer (project to queries, keys and values,
 * append the keys and values to lmkv, attend through lmkv's retrieval attention, project back,
 * add the residual). A long prompt is prefilled in chunks, then a few tokens are decoded greedily.
 *
 *   c_engine DATA_DIR [PROMPT_TOKENS]
 */
#include <lmkv/lmkv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 64, MODEL = HEADS * HEAD_DIM,
       KV = KV_HEADS * HEAD_DIM, VOCAB = 256, CHUNK = 100, DECODE = 8 };

static uint64_t rng_state = 88172645463325252ull;
static float uniform(void) { /* xorshift64, in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)(rng_state >> 40) / (float)(1 << 23) - 1.0f;
}

/* float to IEEE half, round to nearest even (normal and zero range is all this model produces). */
static uint16_t to_half(float x) {
  uint32_t bits;
  memcpy(&bits, &x, 4);
  const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
  const float a = fabsf(x);
  if (a < 6.103515625e-05f) return sign; /* flush tiny values to zero */
  if (a >= 65504.0f) return (uint16_t)(sign | 0x7BFF);
  memcpy(&bits, &a, 4);
  bits += 0xFFF + ((bits >> 13) & 1);
  return (uint16_t)(sign | ((bits >> 13) - (112u << 10)));
}

typedef struct {
  float wq[MODEL][MODEL], wk[KV][MODEL], wv[KV][MODEL], wo[MODEL][MODEL];
} Layer;

static void matvec(const float* w, const float* x, float* y, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    float s = 0;
    for (int c = 0; c < cols; ++c) s += w[r * cols + c] * x[c];
    y[r] = s;
  }
}

static void embed(int token, float* x) {
  uint64_t saved = rng_state;
  rng_state = 0x9E3779B97F4A7C15ull * (uint64_t)(token + 1);
  for (int i = 0; i < MODEL; ++i) x[i] = uniform();
  rng_state = saved;
}

static int check(lmkv_status s, const char* what) {
  if (s != LMKV_OK) fprintf(stderr, "c_engine: %s failed (%d): %s\n", what, (int)s, lmkv_last_error());
  return s == LMKV_OK;
}

/* Runs `n` tokens (embeddings x[n][MODEL], updated in place) through every layer. */
static int forward(lmkv_cache* cache, Layer* layers, float* x, int n) {
  float* q = malloc(sizeof(float) * n * MODEL);
  float* o = malloc(sizeof(float) * n * MODEL);
  uint16_t* k = malloc(sizeof(uint16_t) * n * KV);
  uint16_t* v = malloc(sizeof(uint16_t) * n * KV);
  float tmp[MODEL > KV ? MODEL : KV];
  int ok = q && o && k && v;
  for (int l = 0; ok && l < LAYERS; ++l) {
    for (int t = 0; t < n; ++t) {
      matvec(&layers[l].wq[0][0], x + t * MODEL, q + t * MODEL, MODEL, MODEL);
      matvec(&layers[l].wk[0][0], x + t * MODEL, tmp, KV, MODEL);
      for (int i = 0; i < KV; ++i) k[t * KV + i] = to_half(tmp[i]);
      matvec(&layers[l].wv[0][0], x + t * MODEL, tmp, KV, MODEL);
      for (int i = 0; i < KV; ++i) v[t * KV + i] = to_half(tmp[i]);
    }
    ok = check(lmkv_append(cache, 0, (uint32_t)l, (uint32_t)n, k, v, NULL), "lmkv_append") &&
         check(lmkv_attend(cache, 0, (uint32_t)l, (uint32_t)n, q, o, NULL), "lmkv_attend");
    for (int t = 0; ok && t < n; ++t) {
      matvec(&layers[l].wo[0][0], o + t * MODEL, tmp, MODEL, MODEL);
      double norm = 0;
      for (int i = 0; i < MODEL; ++i) {
        x[t * MODEL + i] += tmp[i];
        norm += (double)x[t * MODEL + i] * x[t * MODEL + i];
      }
      const float scale = (float)(1.0 / sqrt(norm / MODEL + 1e-6)); /* RMS norm */
      for (int i = 0; i < MODEL; ++i) x[t * MODEL + i] *= scale;
    }
  }
  free(q), free(o), free(k), free(v);
  return ok;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: c_engine DATA_DIR [PROMPT_TOKENS]\n");
    return 2;
  }
  const int prompt = argc > 2 ? atoi(argv[2]) : 2000;
  Layer* layers = malloc(sizeof(Layer) * LAYERS);
  if (layers == NULL || prompt < 1) return 2;
  const float w = 1.0f / sqrtf((float)MODEL);
  for (int l = 0; l < LAYERS; ++l) {
    float* all = &layers[l].wq[0][0];
    for (size_t i = 0; i < sizeof(Layer) / sizeof(float); ++i) all[i] = 2 * w * uniform();
  }

  lmkv_config config = lmkv_default_config();
  config.layers = LAYERS;
  config.heads = HEADS;
  config.kv_heads = KV_HEADS;
  config.head_dim = HEAD_DIM;
  config.top_k = 8;
  config.host_capacity_bytes = 4u << 20;
  config.data_dir = argv[1];
  lmkv_cache* cache = NULL;
  if (!check(lmkv_open(&config, &cache), "lmkv_open")) return 1;
  lmkv_erase_sequence(cache, 0); /* start the sequence afresh */

  /* Prefill: the prompt in chunks. */
  float* x = malloc(sizeof(float) * CHUNK * MODEL);
  int token = 1, ok = x != NULL;
  for (int done = 0; ok && done < prompt; done += CHUNK) {
    const int n = prompt - done < CHUNK ? prompt - done : CHUNK;
    for (int t = 0; t < n; ++t) embed((done + t) * 7 % VOCAB, x + t * MODEL);
    ok = forward(cache, layers, x, n);
    if (ok) token = (int)(fabsf(x[(n - 1) * MODEL]) * 1000) % VOCAB;
  }
  /* Decode: greedy over a toy vocabulary (the token whose embedding best matches the output). */
  printf("prompt of %d tokens; decoded:", prompt);
  for (int step = 0; ok && step < DECODE; ++step) {
    embed(token, x);
    ok = forward(cache, layers, x, 1);
    float best = -1e30f, e[MODEL];
    for (int c = 0; ok && c < VOCAB; ++c) {
      embed(c, e);
      float s = 0;
      for (int i = 0; i < MODEL; ++i) s += e[i] * x[i];
      if (s > best) best = s, token = c;
    }
    printf(" %d", token);
  }
  printf("\n");
  size_t needed = 0;
  lmkv_stats_json(cache, NULL, 0, &needed); /* size query */
  char* stats = malloc(needed);
  if (ok && stats && check(lmkv_stats_json(cache, stats, needed, &needed), "lmkv_stats_json")) {
    printf("stats: %.120s...\n", stats);
  }
  free(stats), free(x), free(layers);
  if (!check(lmkv_close(cache), "lmkv_close")) return 1;
  return ok ? 0 : 1;
}
