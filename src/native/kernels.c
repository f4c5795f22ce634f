/*
 * Native versions of src/train/kernels.ts (same interface, same argument objects), multi-threaded
 * with pthreads: the fused encoder GEMM + TopK, the sparse decode and backward passes, and Adam of a
 * TopK SAE training step, and the AuxK products. decode, backward, encodeTopK and auxK run off the JS
 * thread and return promises. Their hot loops (kernels_isa.h) are built once per instruction set
 * (generic x86-64, AVX2+FMA, AVX-512) and picked at run time, so one build runs on any x86-64 CPU
 * with the widest code it has; the module exports each usable build's functions by ISA name.
 * Determinism: work is split into fixed chunks (rows for decode, LATENT_CHUNK latents for
 * backward, latent blocks for the encoder with an order-independent merge); each output element is
 * written by exactly one chunk, partial sums are per chunk, so the result never depends on the
 * thread count or scheduling.
 *
 * Outside training, two loading loops of the T5 encoder live here too, bit-identical to their JS
 * fallbacks: int8 block quantisation (quantize8) and f16 / bf16 -> f32 widening. The addon's other
 * unit, forward.c, runs the CLIP text tower's blocks; addon.h holds what both share.
 *
 * Built by `node-gyp rebuild -C src/native` (npm install); without it the JS kernels run.
 */
#include <node_api.h>
#include "addon.h"
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define LATENT_CHUNK 256
#define ROW_CHUNK 16

/* 8 floats, unaligned loads/stores allowed; GCC lowers it to AVX (or pairs of SSE). */
typedef float v8 __attribute__((vector_size(32), aligned(4)));

/* Asks for a row's cache lines ahead of use: the sparse passes jump between rows at random. */
static inline void prefetch_row(const float *p, int n) {
  for (int t = 0; t < n; t += 16) __builtin_prefetch(p + t);
}

/* One instruction set's build of the hot loops (kernels_isa.h); nr = its GEMM tile width. */
typedef struct { const char *name; int nr; task_fn decode, backward, encode_block, gemm_pack_b, gemm_task, quantize8; } isa_t;

/* ---------------------------------------------------------------- colStats */

static napi_value col_stats(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  const float *x = F32(&a, "x");
  double *sum = F64(&a, "sum"), *sumSq = F64(&a, "sumSq");
  int B = (int)get_num(&a, "B"), D = (int)get_num(&a, "D");
  if (a.bad) return finish(&a);
  double ss = 0;
  memset(sum, 0, sizeof(double) * D);
  for (int b = 0; b < B; b++) {
    const float *r = x + (size_t)b * D;
    for (int t = 0; t < D; t++) { sum[t] += r[t]; ss += (double)r[t] * r[t]; }
  }
  sumSq[0] = ss;
  return NULL;
}

/* ---------------------------------------------------------------- decode */

typedef struct {
  int B, D; const float *x, *bPre, *wDec, *val; const int32_t *rowPtr, *lat; float gScale;
  float *xc, *g; double *rowErr; const isa_t *isa;
} decode_t;

static void decode_run(void *ctx) {
  decode_t *c = ctx;
  parallel_for((c->B + ROW_CHUNK - 1) / ROW_CHUNK, c->isa->decode, c);
}

static napi_value decode(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  decode_t c = {
    (int)get_num(&a, "B"), (int)get_num(&a, "D"), F32(&a, "x"), F32(&a, "bPre"), F32(&a, "wDec"), F32(&a, "val"),
    I32(&a, "rowPtr"), I32(&a, "lat"), (float)get_num(&a, "gScale"), F32(&a, "xc"), F32(&a, "g"), F64(&a, "rowErr"), a.isa,
  };
  if (a.bad) return finish(&a);
  return run_async(&a, "itd_decode", decode_run, heap_copy(&c, sizeof c));
}

/* ---------------------------------------------------------------- backward + Adam */

typedef struct {
  int n, D; float *wEnc, *bEnc, *wDec; const float *xc, *g, *colVal; const int32_t *colPtr, *colRow, *auxSlot;
  const float *auxWEnc, *auxBEnc, *auxWDec; double *dbPre;
  int adam; float *mWEnc, *vWEnc, *mBEnc, *vBEnc, *mWDec, *vWDec; float lr, b1, b2, eps, stepSize, rsqrtBc2;
  float *gWEnc, *gBEnc, *gWDec; const isa_t *isa;
} backward_t;

static void backward_run(void *ctx) {
  backward_t *c = ctx;
  parallel_for((c->n + LATENT_CHUNK - 1) / LATENT_CHUNK, c->isa->backward, c);
}

static napi_value backward(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  backward_t c = {.isa = a.isa};
  c.n = (int)get_num(&a, "n");
  c.D = (int)get_num(&a, "D");
  c.wEnc = F32(&a, "wEnc"); c.bEnc = F32(&a, "bEnc"); c.wDec = F32(&a, "wDec");
  c.xc = F32(&a, "xc"); c.g = F32(&a, "g");
  c.colPtr = I32(&a, "colPtr"); c.colRow = I32(&a, "colRow"); c.colVal = F32(&a, "colVal");
  c.auxSlot = I32(&a, "auxSlot"); c.auxWEnc = F32(&a, "auxWEnc"); c.auxBEnc = F32(&a, "auxBEnc"); c.auxWDec = F32(&a, "auxWDec");
  c.dbPre = F64(&a, "dbPre");
  if (a.bad) return finish(&a);
  args_t sub = a;
  napi_value obj;
  if (has(&a, "adam")) {
    napi_get_named_property(env, a.obj, "adam", &obj);
    sub.obj = obj;
    c.adam = 1;
    c.mWEnc = F32(&sub, "mWEnc"); c.vWEnc = F32(&sub, "vWEnc"); c.mBEnc = F32(&sub, "mBEnc"); c.vBEnc = F32(&sub, "vBEnc");
    c.mWDec = F32(&sub, "mWDec"); c.vWDec = F32(&sub, "vWDec");
    double lr = get_num(&sub, "lr"), bc1 = get_num(&sub, "bc1"), bc2 = get_num(&sub, "bc2");
    c.b1 = (float)get_num(&sub, "beta1"); c.b2 = (float)get_num(&sub, "beta2"); c.eps = (float)get_num(&sub, "eps");
    c.stepSize = (float)(lr / bc1);
    c.rsqrtBc2 = (float)(1 / sqrt(bc2));
  } else if (has(&a, "grads")) {
    napi_get_named_property(env, a.obj, "grads", &obj);
    sub.obj = obj;
    c.gWEnc = F32(&sub, "wEnc"); c.gBEnc = F32(&sub, "bEnc"); c.gWDec = F32(&sub, "wDec");
  } else {
    napi_throw_error(env, NULL, "native kernel: backward needs 'adam' or 'grads'");
    return NULL;
  }
  if (sub.bad) return finish(&sub);
  return run_async(&a, "itd_backward", backward_run, heap_copy(&c, sizeof c));
}

/* ---------------------------------------------------------------- fused encoder GEMM + TopK */

/*
 * pre = (x - b_pre) W_enc^T + b_enc [B, n] is never stored: a register-blocked GEMM (MR rows x NR
 * latents per micro-tile, NR = 16 on AVX2, 32 on AVX-512; A packed once as 6-row panels, W_enc
 * packed per block of NC latents) feeds each tile straight into per-thread running top-k lists; the lists are
 * merged at the end. Order is (value desc, index asc), a total order, so the result does not depend
 * on which thread saw which block.
 */
#define MR 6
#define NC 160 /* a multiple of every NR; small blocks keep the threads finishing together */
#define ENC_KC 256 /* K chunk of the encoder tiles: NR x ENC_KC floats of W_enc stay in L1 */
#define ENC_KB 16 /* inputs per run of the W_enc packing */
#define ENC_RB 16 /* A panels (rows / MR) per run of the encoder tiles */

/*
 * One row's running top-k: room for TOPK_ROOM k entries; candidates are appended, and a full list
 * is cut back to its k best (gate = the k-th best's value from the first cut on, -inf before). A
 * cut is one selection per (TOPK_ROOM - 1) k appends, far less than keeping a heap in order on every one.
 */
#define TOPK_ROOM 2
typedef struct { float *v; int32_t *j; int filled; float gate; } topk_row_t;

/* The selection order: value descending, then index ascending (a total order on a row's entries). */
static int better(float v, int j, float bv, int bj) { return v > bv || (v == bv && j < bj); }

static void topk_swap(topk_row_t *r, int a, int b) {
  float v = r->v[a]; r->v[a] = r->v[b]; r->v[b] = v;
  int32_t j = r->j[a]; r->j[a] = r->j[b]; r->j[b] = j;
}

/* Keeps the k best entries (quickselect, middle pivot: they end up first, the k-th best at k - 1). */
static void topk_cut(topk_row_t *r, int k) {
  int lo = 0, hi = r->filled - 1, want = k - 1;
  while (lo < hi) {
    float pv = r->v[lo + (hi - lo) / 2];
    int pj = r->j[lo + (hi - lo) / 2], i = lo, j = hi;
    while (i <= j) {
      while (better(r->v[i], r->j[i], pv, pj)) i++;
      while (better(pv, pj, r->v[j], r->j[j])) j--;
      if (i <= j) topk_swap(r, i++, j--);
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break;
  }
  r->filled = k;
  __atomic_store(&r->gate, &r->v[k - 1], __ATOMIC_RELAXED); /* other threads read it (encode_block) */
}

static inline void topk_push(topk_row_t *r, int k, float v, int j) {
  if (r->filled == TOPK_ROOM * k) topk_cut(r, k);
  r->v[r->filled] = v;
  r->j[r->filled++] = j;
}

/* The k best, best first, into values (ReLU'd) and indices; slots past the entries get 0. */
static void topk_drain(topk_row_t *r, int k, float *values, int32_t *indices) {
  if (r->filled > k) topk_cut(r, k);
  for (int a = 1; a < r->filled; a++) /* insertion sort: k entries */
    for (int b = a; b > 0 && better(r->v[b], r->j[b], r->v[b - 1], r->j[b - 1]); b--) topk_swap(r, b, b - 1);
  for (int s = 0; s < k; s++) {
    values[s] = s < r->filled && r->v[s] > 0 ? r->v[s] : 0;
    indices[s] = s < r->filled ? r->j[s] : 0;
  }
}

typedef struct {
  int B, D, n, k, panels;
  const float *wEnc, *bEnc;
  float *ap;            /* [panels][D][MR] */
  float **bp;           /* per thread [NC / NR][D][NR] */
  float **tiles;        /* per thread [panels][MR][NR]: running sums of one latent panel's tiles */
  topk_row_t **lists;   /* per thread [B] */
  int nt;               /* threads (lists) */
  const float *x, *bPre;
  float *values;
  int32_t *indices;
  const isa_t *isa;
} encode_t;

static void pack_a_task(void *ctx, int p, int thread) {
  (void)thread;
  encode_t *c = ctx;
  float *dst = c->ap + (size_t)p * c->D * MR;
  for (int i = 0; i < MR; i++) {
    int row = p * MR + i;
    const float *x = c->x + (size_t)row * c->D;
    for (int kk = 0; kk < c->D; kk++) dst[kk * MR + i] = row < c->B ? x[kk] - c->bPre[kk] : 0;
  }
}

/* Merges row chunk `task` of the threads' lists into values (ReLU'd, descending) and indices [B, k]. */
static void merge_task(void *ctx, int task, int thread) {
  (void)thread;
  encode_t *c = ctx;
  int end = (task + 1) * ROW_CHUNK < c->B ? (task + 1) * ROW_CHUNK : c->B;
  for (int r = task * ROW_CHUNK; r < end; r++) {
    topk_row_t *m = &c->lists[0][r];
    for (int t = 1; t < c->nt; t++) for (int s = 0; s < c->lists[t][r].filled; s++) topk_push(m, c->k, c->lists[t][r].v[s], c->lists[t][r].j[s]);
    topk_drain(m, c->k, c->values + (size_t)r * c->k, c->indices + (size_t)r * c->k);
  }
}

/*
 * One encode call's buffers (packed A, per thread the packed W_enc block, the tile sums and the top-k
 * lists), kept from call to call: freed multi-MB blocks go back to the system here and return as
 * fresh pages, faulted in and zeroed on every call. A call that finds it in use allocates its own.
 */
typedef struct { pthread_mutex_t lock; char *p; size_t size; } scratch_t;
static scratch_t encode_scratch = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static char *scratch_take(scratch_t *s, size_t size, int *owned) {
  size = (size + 63) & ~(size_t)63;
  *owned = pthread_mutex_trylock(&s->lock) == 0;
  if (!*owned) return aligned_alloc(64, size);
  if (s->size < size) {
    free(s->p);
    s->p = aligned_alloc(64, size);
    s->size = size;
  }
  return s->p;
}

static void scratch_give(scratch_t *s, char *p, int owned) {
  if (owned) pthread_mutex_unlock(&s->lock);
  else free(p);
}

/* Carves `bytes` (64-byte aligned) off *at. */
static void *carve(char **at, size_t bytes) {
  void *p = *at;
  *at += (bytes + 63) & ~(size_t)63;
  return p;
}

static void encode_run(void *ctx) {
  encode_t *c = ctx;
  int blocks = (c->n + NC - 1) / NC, nt = thread_count(), B = c->B, k = c->k;
  if (nt > blocks) nt = blocks;
  c->panels = (B + MR - 1) / MR;
  size_t ap = sizeof(float) * ((size_t)c->panels * c->D * MR + 16), bp = sizeof(float) * (size_t)NC * c->D,
         tiles = sizeof(float) * (size_t)c->panels * MR * c->isa->nr, rows = sizeof(topk_row_t) * B, list = sizeof(float) * (size_t)B * TOPK_ROOM * k;
  int owned;
  char *area = scratch_take(&encode_scratch, ap + nt * (bp + tiles + rows + 2 * list + 5 * 64) + 64, &owned), *at = area;
  float *bps[64], *tile_sums[64];
  topk_row_t *lists[64];
  c->ap = carve(&at, ap);
  for (int t = 0; t < nt; t++) {
    bps[t] = carve(&at, bp);
    tile_sums[t] = carve(&at, tiles);
    lists[t] = carve(&at, rows);
    float *v = carve(&at, list);
    int32_t *j = carve(&at, list);
    for (int r = 0; r < B; r++) lists[t][r] = (topk_row_t){v + (size_t)r * TOPK_ROOM * k, j + (size_t)r * TOPK_ROOM * k, 0, -INFINITY};
  }
  c->bp = bps;
  c->tiles = tile_sums;
  c->lists = lists;
  c->nt = nt;
  parallel_for_n(c->panels, nt, pack_a_task, c);
  parallel_for_n(blocks, nt, c->isa->encode_block, c);
  parallel_for_n((B + ROW_CHUNK - 1) / ROW_CHUNK, nt, merge_task, c);
  scratch_give(&encode_scratch, area, owned);
}

static napi_value encode_topk(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  encode_t c = {.isa = a.isa};
  c.B = (int)get_num(&a, "B"); c.D = (int)get_num(&a, "D"); c.n = (int)get_num(&a, "n"); c.k = (int)get_num(&a, "k");
  c.x = F32(&a, "x"); c.bPre = F32(&a, "bPre"); c.wEnc = F32(&a, "wEnc"); c.bEnc = F32(&a, "bEnc");
  c.values = F32(&a, "values");
  c.indices = I32(&a, "indices");
  if (a.bad) return finish(&a);
  if (c.B < 1 || c.k < 1 || c.k > c.n) {
    napi_throw_error(env, NULL, "native kernel: encodeTopK needs B >= 1 and 1 <= k <= n");
    return NULL;
  }
  return run_async(&a, "itd_encode_topk", encode_run, heap_copy(&c, sizeof c));
}

/* ---------------------------------------------------------------- dense GEMM (AuxK) */

/*
 * C[M, N] = A B, A(i, kk) = a[i rsA + kk csA], B(kk, j) = b[kk rsB + j csB] (strides give the
 * transposes), C row-major. Both operands are packed whole into the micro-kernel's panels; each task
 * owns GEMM_MB x GEMM_NB panels of C and walks K in KC chunks (A and B chunks stay in L2), so every
 * element of C is one task's fixed-order sum whatever the thread count.
 */
#define KC 512
#define GEMM_MB 8
#define GEMM_NB 4

typedef struct { int M, N, K, pm, qn; const float *a, *b; long rsA, csA, rsB, csB; float *c, *ap, *bp; } gemm_t;

static void gemm_pack_a(void *ctx, int p, int thread) {
  (void)thread;
  gemm_t *c = ctx;
  float *dst = c->ap + (size_t)p * c->K * MR;
  for (int kk = 0; kk < c->K; kk++)
    for (int i = 0; i < MR; i++) { int row = p * MR + i; dst[kk * MR + i] = row < c->M ? c->a[row * c->rsA + kk * c->csA] : 0; }
}

static void gemm(const isa_t *isa, int M, int N, int K, const float *a, long rsA, long csA, const float *b, long rsB, long csB, float *out) {
  gemm_t c = {M, N, K, (M + MR - 1) / MR, (N + isa->nr - 1) / isa->nr, a, b, rsA, csA, rsB, csB, out, NULL, NULL};
  c.ap = aligned_alloc(64, sizeof(float) * ((size_t)c.pm * K * MR + 16));
  c.bp = aligned_alloc(64, sizeof(float) * ((size_t)c.qn * K * isa->nr + 16));
  parallel_for(c.pm, gemm_pack_a, &c);
  parallel_for(c.qn, isa->gemm_pack_b, &c);
  parallel_for(((c.pm + GEMM_MB - 1) / GEMM_MB) * ((c.qn + GEMM_NB - 1) / GEMM_NB), isa->gemm_task, &c);
  free(c.ap);
  free(c.bp);
}

/* ---------------------------------------------------------------- int8 block quantisation */

/*
 * quantize8 (src/encoder/t5/linear.ts, onnxruntime MatMulNBits' layout), bit for bit what the JS
 * fallback computes: per row and block of Q8_BLOCK inputs, scale = f32(max|w| / 127) (1 when the
 * block is all zero), code = Math.round(w / scale) + 128 stored as a Uint8Array stores a number,
 * the tail block padded with 128. JS divides in double, so do both paths here: an f32 quotient
 * (or a reciprocal) would move some near-ties across .5. In the fast path |w / scale| <= 127 (1 +
 * 2^-23), so the code is 1..255 and needs no modulo; blocks holding a NaN or an Inf, or whose scale
 * underflowed below FLT_MIN, take the slow path that spells out JS's rules.
 */
#define Q8_BLOCK 32
#define Q8_ROWS 16 /* rows per task */

/* codes [rows, blocks, Q8_BLOCK], scales [rows, blocks] */
typedef struct { const float *w; int rows, cols, blocks; uint8_t *codes; float *scales; } quant8_t;

/* Math.round: the nearest integer, halves toward +Inf (d - floor(d) is exact, or for d in (-1, 0) rounds without crossing .5). */
static inline double js_round(double d) {
  double f = floor(d);
  return f + (double)(d - f >= 0.5);
}

/* A number stored into a Uint8Array (ECMAScript ToUint8): NaN and +-Inf give 0, else the integer part modulo 256. */
static uint8_t js_to_uint8(double v) {
  if (!isfinite(v)) return 0;
  double m = fmod(trunc(v), 256.0);
  return (uint8_t)(m < 0 ? m + 256 : m);
}

/*
 * The block scale from the largest |w| as bits (NaN patterns sort above Inf): Math.max propagates
 * a NaN, and NaN > 0 is false, so such a block gets scale 1 like an all-zero one.
 */
static inline float q8_scale(uint32_t max_bits) {
  if (max_bits == 0 || max_bits > 0x7f800000u) return 1.0f;
  float m;
  memcpy(&m, &max_bits, 4);
  return (float)((double)m / 127.0);
}

/* The slow path: JS's rules for every quotient (Inf, NaN, codes past 255 under a subnormal scale). */
static void q8_block_exact(const float *w, int n, float scale, uint8_t *out) {
  for (int i = 0; i < n; i++) out[i] = js_to_uint8(js_round((double)w[i] / (double)scale) + 128);
}

/* ---------------------------------------------------------------- f16 / bf16 -> f32 */

/*
 * The f16 table as the JS one holds it (io/safetensors.ts f16ToF32 stored in a Float32Array): every
 * NaN is the canonical quiet NaN 0x7fc00000, not its payload; zero, subnormals, Inf keep their sign.
 */
static uint32_t f16_table[65536];

static void build_f16_table(void) {
  for (uint32_t h = 0; h < 65536; h++) {
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
      float v = (float)mant * 0x1p-24f; /* exact: mant < 2^10 */
      memcpy(&bits, &v, 4);
      bits |= sign;
    } else if (exp == 0x1f) {
      bits = mant ? 0x7fc00000u : sign | 0x7f800000u;
    } else {
      bits = sign | ((exp + 112) << 23) | (mant << 13); /* rebias 15 -> 127 */
    }
    f16_table[h] = bits;
  }
}

#define HALF_CHUNK (1 << 16) /* elements per task */

typedef struct { const uint16_t *bits; uint32_t *out; size_t n; } widen_t;

static void widen_bf16_task(void *ctx, int task, int thread) {
  (void)thread;
  const widen_t *c = ctx;
  size_t i0 = (size_t)task * HALF_CHUNK, i1 = i0 + HALF_CHUNK < c->n ? i0 + HALF_CHUNK : c->n;
  for (size_t i = i0; i < i1; i++) c->out[i] = (uint32_t)c->bits[i] << 16;
}

static void widen_f16_task(void *ctx, int task, int thread) {
  (void)thread;
  const widen_t *c = ctx;
  size_t i0 = (size_t)task * HALF_CHUNK, i1 = i0 + HALF_CHUNK < c->n ? i0 + HALF_CHUNK : c->n;
  for (size_t i = i0; i < i1; i++) c->out[i] = f16_table[c->bits[i]];
}

/* f16ToF32 / bf16ToF32({bits: Uint16Array, out: Float32Array}): out[i] = the f32 value of bits[i]. */
static napi_value widen_half(napi_env env, napi_callback_info info, task_fn task) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  widen_t c = {NULL, NULL, 0};
  c.bits = get_sized(&a, "bits", napi_uint16_array, 0, &c.n);
  c.out = get_sized(&a, "out", napi_float32_array, c.n, NULL);
  if (a.bad) return finish(&a);
  parallel_for((int)((c.n + HALF_CHUNK - 1) / HALF_CHUNK), task, &c);
  return NULL;
}

static napi_value f16_to_f32(napi_env env, napi_callback_info info) { return widen_half(env, info, widen_f16_task); }
static napi_value bf16_to_f32(napi_env env, napi_callback_info info) { return widen_half(env, info, widen_bf16_task); }

/* ---------------------------------------------------------------- one build of the hot loops per ISA */

/*
 * The same body (kernels_isa.h) under each target; binding.gyp builds for the baseline x86-64, so
 * nothing outside these functions needs AVX. pick_isa (module load) takes the widest the CPU runs.
 */
#define VW 8
#define ISA(name) name##_generic
#define ISA_NAME "generic"
#include "kernels_isa.h"
#undef ISA
#undef ISA_NAME
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ISA(name) name##_avx2
#define ISA_NAME "avx2"
#include "kernels_isa.h"
#undef ISA
#undef ISA_NAME
#pragma GCC pop_options
#undef VW
#define VW 16
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
#define ISA(name) name##_avx512
#define ISA_NAME "avx512"
#include "kernels_isa.h"
#undef ISA
#undef ISA_NAME
#pragma GCC pop_options
#endif
#undef VW

/* Every build this CPU can run, widest first. */
static int supported_isas(const isa_t **out) {
  int n = 0;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) out[n++] = &isa_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out[n++] = &isa_avx2;
#endif
  out[n++] = &isa_generic;
  return n;
}

/* quantize8({w: Float32Array [rows, cols], rows, cols, codes: Uint8Array, scales: Float32Array}), see quant8_t. */
static napi_value quantize8(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  double rows = get_num(&a, "rows"), cols = get_num(&a, "cols");
  if (!a.bad && !(rows >= 0 && cols >= 1 && rows == floor(rows) && cols == floor(cols) && rows * cols < 0x1p52 && rows < 0x1p31 && cols < 0x1p31)) {
    napi_throw_error(env, NULL, "native kernel: quantize8 needs integers rows >= 0, cols >= 1");
    return NULL;
  }
  quant8_t c = {NULL, (int)rows, (int)cols, (int)((cols + Q8_BLOCK - 1) / Q8_BLOCK), NULL, NULL};
  c.w = get_sized(&a, "w", napi_float32_array, (size_t)c.rows * c.cols, NULL);
  c.codes = get_sized(&a, "codes", napi_uint8_array, (size_t)c.rows * c.blocks * Q8_BLOCK, NULL);
  c.scales = get_sized(&a, "scales", napi_float32_array, (size_t)c.rows * c.blocks, NULL);
  if (a.bad) return finish(&a);
  parallel_for((c.rows + Q8_ROWS - 1) / Q8_ROWS, ((const isa_t *)a.isa)->quantize8, &c);
  return NULL;
}

/* ---------------------------------------------------------------- AuxK */

/*
 * The AuxK loss's gradients over the m dead latents (rows gathered into we, be, wd), as
 * src/train/graphs.ts auxKGraph defines them: P = xc we^T + be, Z = ReLU(TopK_k(P)) kept dense
 * [B, m] (k is a large share of m, so a per-row selection beats running heaps), E = Z wd,
 * G = cAux (E - rScale g), dP = (G wd^T) * [Z > 0], d_we = dP^T xc, d_be = colsum dP,
 * d_wd = Z^T G, sqErr = ||E - rScale g||^2. All products go through the packed GEMM.
 */
typedef struct {
  int B, D, m, k; const float *xc, *g, *we, *be, *wd; float rScale, cAux;
  float *dWe, *dBe, *dWd; double *sqErr; const isa_t *isa;
  float *Z; /* [B, m]: P in, Z out */
} auxk_t;

/* The k-th largest of v[0..n) (v is reordered): quickselect, middle pivot. */
static float kth_largest(float *v, int n, int k) {
  int lo = 0, hi = n - 1, want = k - 1;
  while (lo < hi) {
    float pivot = v[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (v[i] > pivot) i++;
      while (v[j] < pivot) j--;
      if (i <= j) { float t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return v[want];
  }
  return v[want];
}

/* Row b of P [B, m] -> Z: the k largest (ties: lower index first, as TopK) if positive, else 0. */
static void auxk_select_task(void *ctx, int task, int thread) {
  (void)thread;
  auxk_t *c = ctx;
  int m = c->m, k = c->k, end = (task + 1) * ROW_CHUNK < c->B ? (task + 1) * ROW_CHUNK : c->B;
  float *tmp = malloc(sizeof(float) * m);
  for (int b = task * ROW_CHUNK; b < end; b++) {
    float *z = c->Z + (size_t)b * m;
    for (int s = 0; s < m; s++) z[s] += c->be[s];
    memcpy(tmp, z, sizeof(float) * m);
    float t = kth_largest(tmp, m, k);
    int above = 0;
    for (int s = 0; s < m; s++) above += z[s] > t;
    int ties = k - above; /* entries equal to t that still fit, lowest index first */
    for (int s = 0; s < m; s++) {
      int keep = z[s] > t || (z[s] == t && ties-- > 0);
      z[s] = keep && z[s] > 0 ? z[s] : 0;
    }
  }
  free(tmp);
}

static void auxk_run(void *ctx) {
  auxk_t *c = ctx;
  int B = c->B, D = c->D, m = c->m;
  size_t BD = (size_t)B * D, Bm = (size_t)B * m;
  float *Z = c->Z = malloc(sizeof(float) * Bm), *G = malloc(sizeof(float) * BD), *dP = malloc(sizeof(float) * Bm);
  gemm(c->isa, B, m, D, c->xc, D, 1, c->we, 1, D, Z);
  parallel_for((B + ROW_CHUNK - 1) / ROW_CHUNK, auxk_select_task, c);
  gemm(c->isa, B, D, m, Z, m, 1, c->wd, D, 1, G);
  double sq = 0;
  for (size_t i = 0; i < BD; i++) {
    float diff = G[i] - c->rScale * c->g[i];
    sq += (double)diff * diff;
    G[i] = c->cAux * diff;
  }
  gemm(c->isa, B, m, D, G, D, 1, c->wd, 1, D, dP);
  memset(c->dBe, 0, sizeof(float) * m);
  for (int b = 0; b < B; b++)
    for (int s = 0; s < m; s++) {
      size_t i = (size_t)b * m + s;
      if (!(Z[i] > 0)) dP[i] = 0;
      c->dBe[s] += dP[i];
    }
  gemm(c->isa, m, D, B, dP, 1, m, c->xc, D, 1, c->dWe);
  gemm(c->isa, m, D, B, Z, 1, m, G, D, 1, c->dWd);
  *c->sqErr = sq;
  free(Z); free(G); free(dP);
}

static napi_value aux_k(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  auxk_t c = {.isa = a.isa};
  c.B = (int)get_num(&a, "B"); c.D = (int)get_num(&a, "D"); c.m = (int)get_num(&a, "m"); c.k = (int)get_num(&a, "k");
  c.xc = F32(&a, "xc"); c.g = F32(&a, "g"); c.we = F32(&a, "we"); c.be = F32(&a, "be"); c.wd = F32(&a, "wd");
  c.rScale = (float)get_num(&a, "rScale"); c.cAux = (float)get_num(&a, "cAux");
  c.dWe = F32(&a, "dWe"); c.dBe = F32(&a, "dBe"); c.dWd = F32(&a, "dWd"); c.sqErr = F64(&a, "sqErr");
  if (a.bad) return finish(&a);
  if (c.B < 1 || c.k < 1 || c.k > c.m) {
    napi_throw_error(env, NULL, "native kernel: auxK needs B >= 1 and 1 <= k <= m");
    return NULL;
  }
  return run_async(&a, "itd_aux_k", auxk_run, heap_copy(&c, sizeof c));
}

/* ---------------------------------------------------------------- geometric median (b_pre init) */

/*
 * src/train/trainer.ts geometricMedianJs bit for bit, on all threads: Weiszfeld's iterations in
 * double from the mean. Every sum keeps the JS order (over rows for each input dimension, over
 * dimensions for each row's distance), so the work splits into row chunks (distances, weights) and
 * dimension chunks (mean, weighted sums); the weight total runs in row order on one thread. No
 * contraction into FMAs: JS rounds every product.
 */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define GM_ROWS 256

/* dims: dimensions per task, one run per thread (long runs of each row keep the strided reads streaming). */
typedef struct { const float *x; int N, D, dims; double *y, *num, *w; } gmedian_t;

static void gm_mean_task(void *ctx, int task, int thread) {
  (void)thread;
  gmedian_t *c = ctx;
  int t0 = task * c->dims, t1 = t0 + c->dims < c->D ? t0 + c->dims : c->D;
  for (int t = t0; t < t1; t++) c->y[t] = 0;
  for (int i = 0; i < c->N; i++)
    for (int t = t0; t < t1; t++) c->y[t] += (double)c->x[(size_t)i * c->D + t] / c->N;
}

/* w_i = 1 / ||x_i - y||, or 0 for a row sitting on y (Weiszfeld's update skips it). */
static double gm_weight(double d2) { return d2 == 0 ? 0 : 1 / sqrt(d2); }

/* Four rows at a time: each distance is still one sum in dimension order, the four chains overlap. */
static void gm_weight_task(void *ctx, int task, int thread) {
  (void)thread;
  gmedian_t *c = ctx;
  int D = c->D, i = task * GM_ROWS, i1 = (task + 1) * GM_ROWS < c->N ? (task + 1) * GM_ROWS : c->N;
  const double *y = c->y;
  for (; i + 4 <= i1; i += 4) {
    const float *x0 = c->x + (size_t)i * D, *x1 = x0 + D, *x2 = x1 + D, *x3 = x2 + D;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int t = 0; t < D; t++) {
      double e0 = (double)x0[t] - y[t], e1 = (double)x1[t] - y[t], e2 = (double)x2[t] - y[t], e3 = (double)x3[t] - y[t];
      s0 += e0 * e0;
      s1 += e1 * e1;
      s2 += e2 * e2;
      s3 += e3 * e3;
    }
    c->w[i] = gm_weight(s0), c->w[i + 1] = gm_weight(s1), c->w[i + 2] = gm_weight(s2), c->w[i + 3] = gm_weight(s3);
  }
  for (; i < i1; i++) {
    const float *x = c->x + (size_t)i * D;
    double d2 = 0;
    for (int t = 0; t < D; t++) {
      double e = (double)x[t] - y[t];
      d2 += e * e;
    }
    c->w[i] = gm_weight(d2);
  }
}

static void gm_num_task(void *ctx, int task, int thread) {
  (void)thread;
  gmedian_t *c = ctx;
  int t0 = task * c->dims, t1 = t0 + c->dims < c->D ? t0 + c->dims : c->D;
  for (int t = t0; t < t1; t++) c->num[t] = 0;
  for (int i = 0; i < c->N; i++) {
    if (c->w[i] == 0) continue;
    for (int t = t0; t < t1; t++) c->num[t] += c->w[i] * c->x[(size_t)i * c->D + t];
  }
}

/* geometricMedian({x: Float32Array [N, D], N, D, iters, tol2 (the squared relative tolerance), y: Float64Array [D] out}). */
static napi_value geometric_median(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  double N = get_num(&a, "N"), D = get_num(&a, "D"), iters = get_num(&a, "iters"), tol2 = get_num(&a, "tol2");
  if (!a.bad && !(N >= 1 && D >= 1 && N == floor(N) && D == floor(D) && N * D < 0x1p31 && iters >= 0)) {
    napi_throw_error(env, NULL, "native kernel: geometricMedian needs integers N >= 1, D >= 1, iters >= 0");
    return NULL;
  }
  int nt = thread_count();
  gmedian_t c = {NULL, (int)N, (int)D, (((int)D + nt - 1) / nt + 7) / 8 * 8, NULL, NULL, NULL};
  c.x = get_sized(&a, "x", napi_float32_array, (size_t)c.N * c.D, NULL);
  c.y = get_sized(&a, "y", napi_float64_array, c.D, NULL);
  if (a.bad) return finish(&a);
  c.num = malloc(sizeof(double) * c.D);
  c.w = malloc(sizeof(double) * c.N);
  int dims = (c.D + c.dims - 1) / c.dims, rows = (c.N + GM_ROWS - 1) / GM_ROWS;
  parallel_for(dims, gm_mean_task, &c);
  for (int it = 0; it < iters; it++) {
    parallel_for(rows, gm_weight_task, &c);
    double den = 0;
    for (int i = 0; i < c.N; i++) den += c.w[i];
    if (den == 0) break;
    parallel_for(dims, gm_num_task, &c);
    double step = 0, norm = 0;
    for (int t = 0; t < c.D; t++) {
      double v = c.num[t] / den;
      step += (v - c.y[t]) * (v - c.y[t]);
      norm += v * v;
      c.y[t] = v;
    }
    if (step <= tol2 * (norm + 1e-30)) break;
  }
  free(c.num);
  free(c.w);
  return NULL;
}
#pragma GCC pop_options

/* ---------------------------------------------------------------- process */

/*
 * mallocMmapThreshold(bytes) -> bool: glibc then serves every allocation of at least `bytes` with
 * its own mapping, unmapped on free. By default the threshold climbs (up to 32 MiB) with each freed
 * block, so onnxruntime's per-op activation buffers (1-32 MiB for a T5-XXL block at 512 tokens)
 * land in malloc heaps that keep their pages after the run: RSS grows by the live set of every
 * thread that ran a session. False where the C library is not glibc (nothing changed).
 */
static napi_value malloc_mmap_threshold(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  double bytes = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_double(env, argv[0], &bytes) != napi_ok || !(bytes >= 0 && bytes <= 1 << 30)) {
    napi_throw_type_error(env, NULL, "mallocMmapThreshold(bytes): bytes must be a number in 0..2^30");
    return NULL;
  }
#if defined(__GLIBC__)
  bool ok = mallopt(M_MMAP_THRESHOLD, (int)bytes) == 1;
#else
  bool ok = false;
#endif
  napi_get_boolean(env, ok, &out);
  return out;
}

/* ---------------------------------------------------------------- module */

/* The kernels bound to one ISA build (callback data), as an object. */
static napi_value isa_object(napi_env env, const isa_t *isa) {
  void *d = (void *)isa;
  napi_property_descriptor props[] = {
    {"decode", NULL, decode, NULL, NULL, NULL, napi_default, d},
    {"backward", NULL, backward, NULL, NULL, NULL, napi_default, d},
    {"encodeTopK", NULL, encode_topk, NULL, NULL, NULL, napi_default, d},
    {"auxK", NULL, aux_k, NULL, NULL, NULL, napi_default, d},
  };
  napi_value obj;
  napi_create_object(env, &obj);
  napi_define_properties(env, obj, sizeof props / sizeof props[0], props);
  return obj;
}

/* exports: colStats, mallocMmapThreshold, quantize8, f16ToF32, bf16ToF32, geometricMedian, and isas = {name: kernels} for every build this CPU runs, widest first. */
static napi_value init(napi_env env, napi_value exports) {
  const isa_t *isas[3];
  int n = supported_isas(isas);
  napi_value byName;
  napi_create_object(env, &byName);
  for (int i = 0; i < n; i++) napi_set_named_property(env, byName, isas[i]->name, isa_object(env, isas[i]));
  napi_set_named_property(env, exports, "isas", byName);
  export_fn(env, exports, "colStats", col_stats, NULL);
  export_fn(env, exports, "mallocMmapThreshold", malloc_mmap_threshold, NULL);
  export_fn(env, exports, "quantize8", quantize8, (void *)isas[0]); /* exact on every ISA: the widest */
  build_f16_table();
  export_fn(env, exports, "f16ToF32", f16_to_f32, NULL);
  export_fn(env, exports, "bf16ToF32", bf16_to_f32, NULL);
  export_fn(env, exports, "geometricMedian", geometric_median, NULL);
  forward_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
