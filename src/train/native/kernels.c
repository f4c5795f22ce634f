/*
 * Native versions of src/train/kernels.ts (same interface, same argument objects), multi-threaded
 * with pthreads: the fused encoder GEMM + TopK, the sparse decode and backward passes, and Adam of a
 * TopK SAE training step. decode, backward and encodeTopK run off the JS thread and return promises.
 * Determinism: work is split into fixed chunks (rows for decode, LATENT_CHUNK latents for
 * backward, latent blocks for the encoder with an order-independent merge); each output element is
 * written by exactly one chunk, partial sums are per chunk, so the result never depends on the
 * thread count or scheduling.
 *
 * Built by `node-gyp rebuild -C src/train/native` (npm install); without it the JS kernels run.
 */
#include <node_api.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LATENT_CHUNK 256
#define ROW_CHUNK 16

/* 8 floats, unaligned loads/stores allowed; GCC lowers it to AVX (or pairs of SSE). */
typedef float v8 __attribute__((vector_size(32), aligned(4)));

static float dot(const float *a, const float *b, int n) {
  v8 acc = {0};
  int t = 0;
  for (; t + 8 <= n; t += 8) acc += *(const v8 *)(a + t) * *(const v8 *)(b + t);
  float s = 0;
  for (int i = 0; i < 8; i++) s += acc[i];
  for (; t < n; t++) s += a[t] * b[t];
  return s;
}

/* Asks for a row's cache lines ahead of use: the sparse passes jump between rows at random. */
static void prefetch_row(const float *p, int n) {
  for (int t = 0; t < n; t += 16) __builtin_prefetch(p + t);
}

/* y += s x */
static void axpy(float *y, float s, const float *x, int n) {
  int t = 0;
  v8 sv = {s, s, s, s, s, s, s, s};
  for (; t + 8 <= n; t += 8) *(v8 *)(y + t) += sv * *(const v8 *)(x + t);
  for (; t < n; t++) y[t] += s * x[t];
}

/* ---------------------------------------------------------------- thread pool (fork/join per call) */

typedef void (*task_fn)(void *ctx, int task, int thread);
typedef struct { task_fn fn; void *ctx; int tasks; atomic_int next; } job_t;
typedef struct { job_t *job; int id; } worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  for (int i; (i = atomic_fetch_add(&w->job->next, 1)) < w->job->tasks;) w->job->fn(w->job->ctx, i, w->id);
  return NULL;
}

static int thread_count(void) {
  const char *env = getenv("ITD_THREADS");
  int n = env ? atoi(env) : 0;
  if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (n > 64 ? 64 : n) : 1;
}

/* Runs fn(ctx, task, thread) for every task on up to `threads` threads (thread ids 0..threads-1). */
static void parallel_for_n(int tasks, int threads, task_fn fn, void *ctx) {
  job_t job = {fn, ctx, tasks, 0};
  worker_t w[64];
  pthread_t th[64];
  int started = 0;
  for (int i = 0; i < threads; i++) w[i] = (worker_t){&job, i};
  for (int i = 1; i < threads; i++) if (pthread_create(&th[started], NULL, worker, &w[started + 1]) == 0) started++;
  worker(&w[0]);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

static void parallel_for(int tasks, task_fn fn, void *ctx) {
  int nt = thread_count();
  parallel_for_n(tasks, nt < tasks ? nt : tasks, fn, ctx);
}

/* ---------------------------------------------------------------- argument helpers */

typedef struct { napi_env env; napi_value obj; int bad; char err[160]; } args_t;

static void *get_array(args_t *a, const char *name, napi_typedarray_type want) {
  napi_value v;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t n = 0;
  void *data = NULL;
  if (a->bad) return NULL;
  if (napi_get_named_property(a->env, a->obj, name, &v) != napi_ok || napi_is_typedarray(a->env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(a->env, v, &type, &n, &data, NULL, NULL) != napi_ok || type != want) {
    a->bad = 1;
    snprintf(a->err, sizeof a->err, "native kernel: argument '%s' missing or of the wrong typed-array type", name);
    return NULL;
  }
  return data;
}
#define F32(a, name) ((float *)get_array(a, name, napi_float32_array))
#define F64(a, name) ((double *)get_array(a, name, napi_float64_array))
#define I32(a, name) ((int32_t *)get_array(a, name, napi_int32_array))

static double get_num(args_t *a, const char *name) {
  napi_value v;
  double d = 0;
  if (a->bad) return 0;
  if (napi_get_named_property(a->env, a->obj, name, &v) != napi_ok || napi_get_value_double(a->env, v, &d) != napi_ok) {
    a->bad = 1;
    snprintf(a->err, sizeof a->err, "native kernel: argument '%s' missing or not a number", name);
  }
  return d;
}

static int has(args_t *a, const char *name) {
  napi_value v;
  napi_valuetype t;
  return napi_get_named_property(a->env, a->obj, name, &v) == napi_ok && napi_typeof(a->env, v, &t) == napi_ok && t == napi_object;
}

static int open_args(napi_env env, napi_callback_info info, args_t *a) {
  size_t argc = 1;
  napi_value argv[1];
  a->env = env;
  a->bad = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_error(env, NULL, "native kernel: expected one argument object");
    return 0;
  }
  a->obj = argv[0];
  return 1;
}

static napi_value finish(args_t *a) {
  if (a->bad) napi_throw_error(a->env, NULL, a->err);
  return NULL;
}

/*
 * The big kernels run on libuv's pool and return a promise, so the JS thread stays free (file reads
 * of the next batch, signals) while they compute. The argument object is referenced until the work
 * completes: its typed arrays must outlive it. ctx is heap-allocated and freed afterwards.
 */
typedef struct { napi_async_work work; napi_deferred deferred; napi_ref keep; void (*run)(void *); void *ctx; } async_job_t;

static void async_execute(napi_env env, void *data) {
  (void)env;
  async_job_t *j = data;
  j->run(j->ctx);
}

static void async_complete(napi_env env, napi_status status, void *data) {
  async_job_t *j = data;
  napi_value v;
  if (status == napi_ok) {
    napi_get_undefined(env, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    napi_value msg;
    napi_create_string_utf8(env, "native kernel: async work failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  }
  napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j->ctx);
  free(j);
}

static napi_value run_async(args_t *a, const char *name, void (*run)(void *), void *ctx) {
  napi_value promise, resource;
  async_job_t *j = calloc(1, sizeof *j);
  j->run = run;
  j->ctx = ctx;
  napi_create_promise(a->env, &j->deferred, &promise);
  napi_create_reference(a->env, a->obj, 1, &j->keep);
  napi_create_string_utf8(a->env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(a->env, NULL, resource, async_execute, async_complete, j, &j->work);
  napi_queue_async_work(a->env, j->work);
  return promise;
}

static void *heap_copy(const void *p, size_t size) {
  void *q = malloc(size);
  memcpy(q, p, size);
  return q;
}

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
  float *xc, *g; double *rowErr;
} decode_t;

static void decode_task(void *ctx, int task, int thread) {
  (void)thread;
  decode_t *c = ctx;
  int D = c->D, end = (task + 1) * ROW_CHUNK < c->B ? (task + 1) * ROW_CHUNK : c->B;
  float *acc = malloc(sizeof(float) * D);
  for (int b = task * ROW_CHUNK; b < end; b++) {
    const float *x = c->x + (size_t)b * D;
    memcpy(acc, c->bPre, sizeof(float) * D);
    for (int p = c->rowPtr[b]; p < c->rowPtr[b + 1]; p++) {
      if (p + 1 < c->rowPtr[c->B]) prefetch_row(c->wDec + (size_t)c->lat[p + 1] * D, D);
      axpy(acc, c->val[p], c->wDec + (size_t)c->lat[p] * D, D);
    }
    double err = 0;
    float *g = c->g + (size_t)b * D, *xc = c->xc + (size_t)b * D;
    for (int t = 0; t < D; t++) {
      float e = acc[t] - x[t];
      err += (double)e * e;
      g[t] = c->gScale * e;
      xc[t] = x[t] - c->bPre[t];
    }
    c->rowErr[b] = err;
  }
  free(acc);
}

static void decode_run(void *ctx) {
  decode_t *c = ctx;
  parallel_for((c->B + ROW_CHUNK - 1) / ROW_CHUNK, decode_task, c);
}

static napi_value decode(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  decode_t c = {
    (int)get_num(&a, "B"), (int)get_num(&a, "D"), F32(&a, "x"), F32(&a, "bPre"), F32(&a, "wDec"), F32(&a, "val"),
    I32(&a, "rowPtr"), I32(&a, "lat"), (float)get_num(&a, "gScale"), F32(&a, "xc"), F32(&a, "g"), F64(&a, "rowErr"),
  };
  if (a.bad) return finish(&a);
  return run_async(&a, "itd_decode", decode_run, heap_copy(&c, sizeof c));
}

/* ---------------------------------------------------------------- backward + Adam */

typedef struct {
  int n, D; float *wEnc, *bEnc, *wDec; const float *xc, *g, *colVal; const int32_t *colPtr, *colRow, *auxSlot;
  const float *auxWEnc, *auxBEnc, *auxWDec; double *dbPre;
  int adam; float *mWEnc, *vWEnc, *mBEnc, *vBEnc, *mWDec, *vWDec; float lr, b1, b2, eps, stepSize, rsqrtBc2;
  float *gWEnc, *gBEnc, *gWDec;
} backward_t;

/* PyTorch Adam: p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). */
static void adam(const backward_t *c, float *p, float *m, float *v, const float *grad, int len) {
  for (int t = 0; t < len; t++) {
    float mi = m[t] = c->b1 * m[t] + (1 - c->b1) * grad[t];
    float vi = v[t] = c->b2 * v[t] + (1 - c->b2) * grad[t] * grad[t];
    p[t] -= c->stepSize * (mi / (sqrtf(vi) * c->rsqrtBc2 + c->eps));
  }
}

static void backward_task(void *ctx, int task, int thread) {
  (void)thread;
  backward_t *c = ctx;
  int D = c->D, j1 = (task + 1) * LATENT_CHUNK < c->n ? (task + 1) * LATENT_CHUNK : c->n;
  float *gDec = malloc(sizeof(float) * D), *gEnc = malloc(sizeof(float) * D);
  double *dbPre = c->dbPre + (size_t)task * D;
  memset(dbPre, 0, sizeof(double) * D);
  for (int j = task * LATENT_CHUNK; j < j1; j++) {
    size_t w = (size_t)j * D;
    float *wd = c->wDec + w, *we = c->wEnc + w;
    memset(gDec, 0, sizeof(float) * D);
    memset(gEnc, 0, sizeof(float) * D);
    float gB = 0;
    for (int p = c->colPtr[j]; p < c->colPtr[j + 1]; p++) {
      const float *g = c->g + (size_t)c->colRow[p] * D, *xc = c->xc + (size_t)c->colRow[p] * D;
      if (p + 1 < c->colPtr[c->n]) prefetch_row(c->g + (size_t)c->colRow[p + 1] * D, D), prefetch_row(c->xc + (size_t)c->colRow[p + 1] * D, D);
      float dz = dot(wd, g, D);
      axpy(gDec, c->colVal[p], g, D);
      axpy(gEnc, dz, xc, D);
      gB += dz;
    }
    int s = c->auxSlot[j];
    if (s >= 0) {
      axpy(gDec, 1, c->auxWDec + (size_t)s * D, D);
      axpy(gEnc, 1, c->auxWEnc + (size_t)s * D, D);
      gB += c->auxBEnc[s];
    }
    for (int t = 0; t < D; t++) dbPre[t] -= (double)gB * we[t];
    if (!c->adam) {
      memcpy(c->gWDec + w, gDec, sizeof(float) * D);
      memcpy(c->gWEnc + w, gEnc, sizeof(float) * D);
      c->gBEnc[j] = gB;
      continue;
    }
    axpy(gDec, -dot(gDec, wd, D), wd, D); /* tangent to the unit sphere */
    adam(c, wd, c->mWDec + w, c->vWDec + w, gDec, D);
    float nrm = sqrtf(dot(wd, wd, D));
    if (nrm > 0) for (int t = 0; t < D; t++) wd[t] /= nrm;
    adam(c, we, c->mWEnc + w, c->vWEnc + w, gEnc, D);
    adam(c, c->bEnc + j, c->mBEnc + j, c->vBEnc + j, &gB, 1);
  }
  free(gDec);
  free(gEnc);
}

static void backward_run(void *ctx) {
  backward_t *c = ctx;
  parallel_for((c->n + LATENT_CHUNK - 1) / LATENT_CHUNK, backward_task, c);
}

static napi_value backward(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  backward_t c = {0};
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
 * pre = (x - b_pre) W_enc^T + b_enc [B, n] is never stored: a register-blocked GEMM (6 rows x 16
 * latents per micro-tile, A packed once as 6-row panels, W_enc packed per block of NC latents so the
 * block sits in L2) feeds each tile straight into per-thread running top-k lists; the lists are
 * merged at the end. Order is (value desc, index asc), a total order, so the result does not depend
 * on which thread saw which block.
 */
#define MR 6
#define NR 16
#define NC 320

/* c[MR][NR] = sum_kk a[kk][MR] b[kk][NR]: 12 accumulators, B loaded once per kk, A broadcast. */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
__attribute__((noinline)) static void micro_tile(const float *restrict a, const float *restrict b, int D, float *restrict c) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
  for (int kk = 0; kk < D; kk++, a += MR, b += NR) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), x;
    x = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  _mm256_store_ps(c + 0, c00); _mm256_store_ps(c + 8, c01); _mm256_store_ps(c + 16, c10); _mm256_store_ps(c + 24, c11);
  _mm256_store_ps(c + 32, c20); _mm256_store_ps(c + 40, c21); _mm256_store_ps(c + 48, c30); _mm256_store_ps(c + 56, c31);
  _mm256_store_ps(c + 64, c40); _mm256_store_ps(c + 72, c41); _mm256_store_ps(c + 80, c50); _mm256_store_ps(c + 88, c51);
}
#else
static void micro_tile(const float *restrict a, const float *restrict b, int D, float *restrict c) {
  for (int i = 0; i < MR * NR; i++) c[i] = 0;
  for (int kk = 0; kk < D; kk++)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) c[i * NR + j] += a[kk * MR + i] * b[kk * NR + j];
}
#endif

/* One row's running top-k as a binary heap, the worst kept entry at the root; gate = its value once full. */
typedef struct { float *v; int32_t *j; int filled; float gate; } topk_row_t;

static int better(float v, int j, float bv, int bj) { return v > bv || (v == bv && j < bj); }

static void heap_swap(topk_row_t *r, int a, int b) {
  float v = r->v[a]; r->v[a] = r->v[b]; r->v[b] = v;
  int32_t j = r->j[a]; r->j[a] = r->j[b]; r->j[b] = j;
}

/* Restores the heap below pos (size entries): the worse child moves up. */
static void sift_down(topk_row_t *r, int pos, int size) {
  for (;;) {
    int c = 2 * pos + 1, w = pos;
    if (c < size && better(r->v[w], r->j[w], r->v[c], r->j[c])) w = c;
    if (c + 1 < size && better(r->v[w], r->j[w], r->v[c + 1], r->j[c + 1])) w = c + 1;
    if (w == pos) return;
    heap_swap(r, pos, w);
    pos = w;
  }
}

static void topk_push(topk_row_t *r, int k, float v, int j) {
  if (r->filled < k) {
    int pos = r->filled++;
    r->v[pos] = v;
    r->j[pos] = j;
    while (pos > 0) {
      int up = (pos - 1) / 2;
      if (!better(r->v[up], r->j[up], r->v[pos], r->j[pos])) break;
      heap_swap(r, pos, up);
      pos = up;
    }
  } else {
    if (!better(v, j, r->v[0], r->j[0])) return;
    r->v[0] = v;
    r->j[0] = j;
    sift_down(r, 0, k);
  }
  if (r->filled == k) r->gate = r->v[0];
}

/* Empties the heap into out (best first, ReLU'd); pops come worst first, so they fill out from the back. */
static void topk_drain(topk_row_t *r, int k, float *values, int32_t *indices) {
  for (int s = r->filled; s < k; s++) { values[s] = 0; indices[s] = 0; }
  while (r->filled > 0) {
    int last = --r->filled;
    values[last] = r->v[0] > 0 ? r->v[0] : 0;
    indices[last] = r->j[0];
    r->v[0] = r->v[last];
    r->j[0] = r->j[last];
    sift_down(r, 0, last);
  }
}

typedef struct {
  int B, D, n, k, panels;
  const float *wEnc, *bEnc;
  float *ap;            /* [panels][D][MR] */
  float **bp;           /* per thread [NC / NR][D][NR] */
  topk_row_t **lists;   /* per thread [B] */
  const float *x, *bPre;
  float *values;
  int32_t *indices;
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

/* Whether any of a tile row's NR values (bias added) reaches the row's gate. */
static int tile_row_hits(const float *v, float gate) {
#if defined(__AVX2__)
  __m256 g = _mm256_set1_ps(gate);
  __m256 hit = _mm256_or_ps(_mm256_cmp_ps(_mm256_load_ps(v), g, _CMP_GE_OQ), _mm256_cmp_ps(_mm256_load_ps(v + 8), g, _CMP_GE_OQ));
  return _mm256_movemask_ps(hit) != 0;
#else
  for (int jj = 0; jj < NR; jj++) if (v[jj] >= gate) return 1;
  return 0;
#endif
}

static void encode_block(void *ctx, int blk, int thread) {
  encode_t *c = ctx;
  int D = c->D, j0 = blk * NC, nj = c->n - j0 < NC ? c->n - j0 : NC, q1 = (nj + NR - 1) / NR;
  float *bp = c->bp[thread];
  topk_row_t *rows = c->lists[thread];
  /* The block's biases; padding latents past n get -inf so they can never be selected. */
  float bias[NC] __attribute__((aligned(32)));
  for (int jj = 0; jj < q1 * NR; jj++) bias[jj] = jj < nj ? c->bEnc[j0 + jj] : -INFINITY;
  for (int q = 0; q < q1; q++) {
    for (int jj = 0; jj < NR; jj++) {
      int j = j0 + q * NR + jj;
      const float *w = c->wEnc + (size_t)j * D;
      float *dst = bp + (size_t)q * D * NR + jj;
      for (int kk = 0; kk < D; kk++) dst[kk * NR] = j < c->n ? w[kk] : 0;
    }
  }
  float tile[MR * NR] __attribute__((aligned(32)));
  for (int p = 0; p < c->panels; p++) {
    const float *a = c->ap + (size_t)p * D * MR;
    for (int q = 0; q < q1; q++) {
      micro_tile(a, bp + (size_t)q * D * NR, D, tile);
      int jb = j0 + q * NR;
      for (int t = 0; t < MR * NR; t++) tile[t] += bias[q * NR + t % NR];
      for (int i = 0; i < MR && p * MR + i < c->B; i++) {
        const float *v = tile + i * NR;
        topk_row_t *r = &rows[p * MR + i];
        if (r->filled < c->k || tile_row_hits(v, r->gate))
          for (int jj = 0; jj < NR; jj++) if (r->filled < c->k || v[jj] >= r->gate) topk_push(r, c->k, v[jj], jb + jj);
      }
    }
  }
}

/* Per-thread lists of k entries for each of B rows (one allocation per thread for values and ids). */
static topk_row_t **alloc_lists(int nt, int B, int k) {
  topk_row_t **lists = malloc(sizeof(topk_row_t *) * nt);
  for (int t = 0; t < nt; t++) {
    lists[t] = malloc(sizeof(topk_row_t) * B);
    float *v = malloc(sizeof(float) * (size_t)B * k);
    int32_t *j = malloc(sizeof(int32_t) * (size_t)B * k);
    for (int r = 0; r < B; r++) lists[t][r] = (topk_row_t){v + (size_t)r * k, j + (size_t)r * k, 0, -INFINITY};
  }
  return lists;
}

/* Merges the threads' lists row by row into values (ReLU'd, descending) and indices [B, k], then frees them. */
static void merge_lists(topk_row_t **lists, int nt, int B, int k, float *values, int32_t *indices) {
  for (int r = 0; r < B; r++) {
    topk_row_t *m = &lists[0][r];
    for (int t = 1; t < nt; t++) for (int s = 0; s < lists[t][r].filled; s++) topk_push(m, k, lists[t][r].v[s], lists[t][r].j[s]);
    topk_drain(m, k, values + (size_t)r * k, indices + (size_t)r * k);
  }
  for (int t = 0; t < nt; t++) { free(lists[t][0].v); free(lists[t][0].j); free(lists[t]); }
  free(lists);
}

static void encode_run(void *ctx) {
  encode_t *c = ctx;
  int blocks = (c->n + NC - 1) / NC, nt = thread_count();
  if (nt > blocks) nt = blocks;
  c->panels = (c->B + MR - 1) / MR;
  c->ap = aligned_alloc(64, sizeof(float) * ((size_t)c->panels * c->D * MR + 16));
  float *bps[64];
  for (int t = 0; t < nt; t++) bps[t] = aligned_alloc(64, sizeof(float) * (size_t)NC * c->D);
  c->bp = bps;
  c->lists = alloc_lists(nt, c->B, c->k);
  parallel_for_n(c->panels, nt, pack_a_task, c);
  parallel_for_n(blocks, nt, encode_block, c);
  merge_lists(c->lists, nt, c->B, c->k, c->values, c->indices);
  for (int t = 0; t < nt; t++) free(bps[t]);
  free(c->ap);
}

static napi_value encode_topk(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  encode_t c = {0};
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

static void gemm_pack_b(void *ctx, int q, int thread) {
  (void)thread;
  gemm_t *c = ctx;
  float *dst = c->bp + (size_t)q * c->K * NR;
  for (int kk = 0; kk < c->K; kk++)
    for (int jj = 0; jj < NR; jj++) { int col = q * NR + jj; dst[kk * NR + jj] = col < c->N ? c->b[kk * c->rsB + col * c->csB] : 0; }
}

static void gemm_task(void *ctx, int task, int thread) {
  (void)thread;
  gemm_t *c = ctx;
  int tm = (c->pm + GEMM_MB - 1) / GEMM_MB, p0 = (task % tm) * GEMM_MB, q0 = (task / tm) * GEMM_NB;
  int p1 = p0 + GEMM_MB < c->pm ? p0 + GEMM_MB : c->pm, q1 = q0 + GEMM_NB < c->qn ? q0 + GEMM_NB : c->qn;
  float tile[MR * NR] __attribute__((aligned(32)));
  for (int k0 = 0; k0 < c->K; k0 += KC) {
    int kc = c->K - k0 < KC ? c->K - k0 : KC;
    for (int q = q0; q < q1; q++)
      for (int p = p0; p < p1; p++) {
        micro_tile(c->ap + ((size_t)p * c->K + k0) * MR, c->bp + ((size_t)q * c->K + k0) * NR, kc, tile);
        for (int i = 0; i < MR && p * MR + i < c->M; i++) {
          float *dst = c->c + (size_t)(p * MR + i) * c->N + q * NR;
          int w = c->N - q * NR < NR ? c->N - q * NR : NR;
          if (k0 == 0) memcpy(dst, tile + i * NR, sizeof(float) * w);
          else for (int jj = 0; jj < w; jj++) dst[jj] += tile[i * NR + jj];
        }
      }
  }
}

static void gemm(int M, int N, int K, const float *a, long rsA, long csA, const float *b, long rsB, long csB, float *out) {
  gemm_t c = {M, N, K, (M + MR - 1) / MR, (N + NR - 1) / NR, a, b, rsA, csA, rsB, csB, out, NULL, NULL};
  c.ap = aligned_alloc(64, sizeof(float) * ((size_t)c.pm * K * MR + 16));
  c.bp = aligned_alloc(64, sizeof(float) * ((size_t)c.qn * K * NR + 16));
  parallel_for(c.pm, gemm_pack_a, &c);
  parallel_for(c.qn, gemm_pack_b, &c);
  parallel_for(((c.pm + GEMM_MB - 1) / GEMM_MB) * ((c.qn + GEMM_NB - 1) / GEMM_NB), gemm_task, &c);
  free(c.ap);
  free(c.bp);
}

/* ---------------------------------------------------------------- AuxK */

/*
 * The AuxK loss's gradients over the m dead latents (rows gathered into we, be, wd), as
 * src/train/graphs.ts auxKGraph defines them: Z = TopK_k(ReLU(xc we^T + be)) through the fused
 * encoder (scattered dense [B, m]: k is a large share of m), E = Z wd, G = cAux (E - rScale g),
 * dP = (G wd^T) * [Z > 0], d_we = dP^T xc, d_be = colsum dP, d_wd = Z^T G, sqErr = ||E - rScale g||^2.
 */
typedef struct {
  int B, D, m, k; const float *xc, *g, *we, *be, *wd; float rScale, cAux;
  float *dWe, *dBe, *dWd; double *sqErr;
} auxk_t;

static void auxk_run(void *ctx) {
  auxk_t *c = ctx;
  int B = c->B, D = c->D, m = c->m, k = c->k;
  size_t BD = (size_t)B * D, Bm = (size_t)B * m;
  float *zeros = calloc(D, sizeof(float)), *vals = malloc(sizeof(float) * B * k);
  int32_t *idx = malloc(sizeof(int32_t) * B * k);
  encode_t e = {.B = B, .D = D, .n = m, .k = k, .x = c->xc, .bPre = zeros, .wEnc = c->we, .bEnc = c->be, .values = vals, .indices = idx};
  encode_run(&e);
  float *Z = calloc(Bm, sizeof(float)), *G = malloc(sizeof(float) * BD), *dP = malloc(sizeof(float) * Bm);
  for (int b = 0; b < B; b++)
    for (int s = 0; s < k; s++) if (vals[b * k + s] > 0) Z[(size_t)b * m + idx[b * k + s]] = vals[b * k + s];
  gemm(B, D, m, Z, m, 1, c->wd, D, 1, G);
  double sq = 0;
  for (size_t i = 0; i < BD; i++) {
    float diff = G[i] - c->rScale * c->g[i];
    sq += (double)diff * diff;
    G[i] = c->cAux * diff;
  }
  gemm(B, m, D, G, D, 1, c->wd, 1, D, dP);
  memset(c->dBe, 0, sizeof(float) * m);
  for (int b = 0; b < B; b++)
    for (int s = 0; s < m; s++) {
      size_t i = (size_t)b * m + s;
      if (!(Z[i] > 0)) dP[i] = 0;
      c->dBe[s] += dP[i];
    }
  gemm(m, D, B, dP, 1, m, c->xc, D, 1, c->dWe);
  gemm(m, D, B, Z, 1, m, G, D, 1, c->dWd);
  *c->sqErr = sq;
  free(zeros); free(vals); free(idx); free(Z); free(G); free(dP);
}

static napi_value aux_k(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  auxk_t c = {0};
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

/* ---------------------------------------------------------------- module */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"colStats", NULL, col_stats, NULL, NULL, NULL, napi_default, NULL},
    {"decode", NULL, decode, NULL, NULL, NULL, napi_default, NULL},
    {"backward", NULL, backward, NULL, NULL, NULL, napi_default, NULL},
    {"encodeTopK", NULL, encode_topk, NULL, NULL, NULL, napi_default, NULL},
    {"auxK", NULL, aux_k, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
