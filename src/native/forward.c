/*
 * The CLIP text tower's blocks in C (src/encoder/clip/native.ts drives it): pre-LayerNorm blocks
 * as Hugging Face CLIPEncoderLayer computes them, x: [n t, D],
 *   a = LN1(x);  [q | k | v] = a [Wq | Wk | Wv]^T + b, q /= sqrt(hd)
 *   x += softmax(q k^T, causal) v Wo^T + bo            (per head)
 *   x += act(LN2(x) W1^T + b1) W2^T + b2
 * and optionally the final LayerNorm.
 *
 * Why not onnxruntime here: its graph of this block ran at 75-79 % of its own best sgemm (the
 * LayerNorms, the softmax, the transposes and the small attention products run apart from the
 * GEMMs, each through memory); here each GEMM keeps its operands in the cache and applies the bias,
 * the scale, the activation or the residual to its tile while it is hot, on packed weights.
 *
 * Determinism: every output element is one fixed-order sum (a GEMM element: k = 0..K-1; a
 * LayerNorm row, an attention row: their own loops), computed by one task, so results do not
 * depend on the thread count, the batch a prompt is in, or where a span of blocks starts.
 * Threads: one fork per forward call; the phases of each block are separated by a barrier.
 */
#include <node_api.h>
#include "addon.h"
#include <math.h>
#include <sys/mman.h>
#include <sys/stat.h>

/*
 * A GEMM task: a block of A panels that fits GEMM_L2 bytes of A (each B panel is reused over it
 * from the cache) x a chunk of B panels; chunks are cut so that there are at least GEMM_TASKS
 * tasks per thread. A LayerNorm task is one A panel of rows.
 */
#define GEMM_L2 (640 * 1024)
#define GEMM_TASKS 24
/* attention: query rows per group (see attention_task); scratch rows of t rounded up to 4 vectors of vw floats */
#define ATTN_ROWS 4
#define ATTN_PAD(t, vw) (((t) + 4 * (vw) - 1) / (4 * (vw)) * (4 * (vw)))

typedef enum { ACT_QUICK_GELU = 0, ACT_GELU = 1, ACT_GELU_TANH = 2 } act_t;
/* What a GEMM does with acc = (A B)[i][j]: c = (acc + b_j) s_j; c += acc + b_j; c = act(acc + b_j), packed as A panels. */
typedef enum { EPI_BIAS_SCALE, EPI_BIAS_RESIDUAL, EPI_BIAS_ACT_PACKED } epi_t;

/* A Linear weight [N, K] packed as B = W^T panels: w [np][K][nr], np = ceil(N / nr); `bytes` mapped. */
typedef struct { int N, K, np; float *w; size_t bytes; } packed_t;
typedef struct { const float *w; int N, K; float *out; } pack_job_t;

/*
 * C [M, N] (row stride ldc) op= A [M, K] B, A packed as panels [ceil(M / mr)][K][mr] (the phase
 * before wrote it so); tasks: blocks of `mpanels` A panels x nchunks chunks of `chunk` B panels.
 */
typedef struct {
  int M, K, ldc, epi, act, mpanels, nchunks, chunk;
  const float *a, *bias, *scale;
  const packed_t *b;
  float *c;
} gemm_job_t;

typedef struct { const float *x, *w, *b; float *y; int M, D, packed; float eps; } ln_job_t;
typedef struct { const float *qkv; float *ctx, **kT, **s; int t, H, hd, D; } attn_job_t;

typedef struct {
  const char *name;
  int mr, nr;
  task_fn pack, gemm, layer_norm, attention;
} fw_isa_t;

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VW 8
#define FMR 6
#define FW(name) name##_avx2
#define FW_NAME "avx2"
#include "forward_isa.h"
#undef FW
#undef FW_NAME
#undef FMR
#undef VW
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#define VW 16
#define FMR 14
#define FW(name) name##_avx512
#define FW_NAME "avx512"
#include "forward_isa.h"
#undef FW
#undef FW_NAME
#undef FMR
#undef VW
#pragma GCC pop_options
#endif

/* The builds this CPU runs, widest first (none: the encoder runs on onnxruntime). */
static int forward_isas(const fw_isa_t **out) {
  int n = 0;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) out[n++] = &isa_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out[n++] = &isa_avx2;
#endif
  return n;
}

/* ---------------------------------------------------------------- packed blocks */

/* One block's weights, packed for `isa`; freed by clipFree (once no forward uses them) or when the handle is collected. */
typedef struct {
  const fw_isa_t *isa;
  int D, I, H, act, users, freed;
  float eps;
  float *vec; /* ln1w ln1b ln2w ln2b [D] each, bqkv scale [3D], bo [D], b1 [I], b2 [D] */
  float *ln1w, *ln1b, *ln2w, *ln2b, *bqkv, *scale, *bo, *b1, *b2;
  packed_t qkv, o, fc1, fc2;
  int64_t bytes;
} block_t;

static void free_packed(packed_t *p) {
  if (p->w) munmap(p->w, p->bytes);
  p->w = NULL;
}

static void block_free_memory(block_t *b) {
  free_packed(&b->qkv), free_packed(&b->o), free_packed(&b->fc1), free_packed(&b->fc2);
  free(b->vec);
  b->vec = NULL;
}

/*
 * Packed weights get their own mapping, populated in one call: the kernel hands over all pages at
 * once instead of taking a fault per 4 KiB page as packing first writes it (a CLIP-L tower packs
 * 318 MiB). Page-aligned, so the panels are 64-byte aligned.
 */
static float *alloc_weights(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* Packs w [N, K] (rows of stacked Linear weights) as B panels into p. */
static int pack_linear(const fw_isa_t *isa, packed_t *p, const float *w, int N, int K, int threads) {
  p->N = N, p->K = K, p->np = (N + isa->nr - 1) / isa->nr;
  p->bytes = sizeof(float) * (size_t)p->np * K * isa->nr;
  p->w = alloc_weights(p->bytes);
  if (p->w) {
    pack_job_t job = {w, N, K, p->w};
    parallel_for_n(p->np, threads < p->np ? threads : p->np, isa->pack, &job);
  }
  return p->w != NULL;
}

/* The handle was collected: no forward holds it (a forward references its arguments until it ends). */
static void block_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  block_t *b = data;
  if (!b->freed) napi_adjust_external_memory(env, -b->bytes, NULL), block_free_memory(b);
  free(b);
}

/*
 * A block's tensors as clipPackBlock gets them: each a Float32Array, or the byte offset of its
 * little-endian f32 values in the file open as `fd`, read with pread into a staging buffer (no
 * copy through JS, no mapping to set up and tear down per block).
 */
#define BLOCK_TENSORS 16
typedef struct { const char *name; size_t count; const float *data; double offset; } tensor_arg_t;

/* Reads every tensor's Float32Array or offset; offsets must lie inside the file. */
static void block_tensors(args_t *a, tensor_arg_t *t, int n, int *fd) {
  double end = 0;
  for (int i = 0; i < n && !a->bad; i++) {
    napi_value v;
    napi_valuetype type;
    bool is_ta = false;
    t[i].data = NULL, t[i].offset = -1;
    if (napi_get_named_property(a->env, a->obj, t[i].name, &v) != napi_ok || napi_typeof(a->env, v, &type) != napi_ok) type = napi_undefined;
    if (type == napi_number && napi_get_value_double(a->env, v, &t[i].offset) == napi_ok && t[i].offset >= 0) {
      end = t[i].offset + 4.0 * t[i].count > end ? t[i].offset + 4.0 * t[i].count : end;
    } else if (napi_is_typedarray(a->env, v, &is_ta) == napi_ok && is_ta) {
      t[i].data = SIZED(a, t[i].name, t[i].count);
    } else {
      a->bad = 1, snprintf(a->err, sizeof a->err, "clipPackBlock: '%s' must be a Float32Array or a file offset", t[i].name);
    }
  }
  if (a->bad || end == 0) return;
  struct stat st;
  *fd = (int)get_num(a, "fd");
  if (!a->bad && (fstat(*fd, &st) != 0 || end > (double)st.st_size)) a->bad = 1, snprintf(a->err, sizeof a->err, "clipPackBlock: tensor offsets past the end of the file (fd %d)", *fd);
}

/* Staging for tensors read from the file, kept between calls (packBlock runs on the JS thread only). */
static struct { float *data; size_t count; } stage;

static float *stage_for(size_t count) {
  if (count > stage.count) {
    free(stage.data);
    stage.data = malloc(sizeof(float) * count);
    stage.count = stage.data ? count : 0;
  }
  return stage.data;
}

/* Tensor t's values into dst (t->count floats): copied from its array or read from the file. */
static int tensor_into(const tensor_arg_t *t, int fd, float *dst) {
  if (t->data) return memcpy(dst, t->data, sizeof(float) * t->count), 1;
  size_t want = sizeof(float) * t->count, done = 0;
  while (done < want) {
    ssize_t got = pread(fd, (char *)dst + done, want - done, (off_t)t->offset + (off_t)done);
    if (got <= 0) return 0;
    done += (size_t)got;
  }
  return 1;
}

/* Packs the stacked rows of tensors t[0..count) (each [rows_i, K]) as one B. */
static int pack_tensors(const fw_isa_t *isa, packed_t *p, const tensor_arg_t *t, int count, int K, int fd, int threads) {
  size_t rows = 0;
  for (int i = 0; i < count; i++) rows += t[i].count / K;
  const float *src = count == 1 && t[0].data ? t[0].data : NULL;
  if (!src) {
    float *s = stage_for(rows * K);
    size_t off = 0;
    for (int i = 0; s && i < count; off += t[i].count, i++) if (!tensor_into(&t[i], fd, s + off)) return 0;
    src = s;
  }
  return src && pack_linear(isa, p, src, (int)rows, K, threads);
}

/*
 * clipPackBlock({isa, threads, D, I, H, act, eps, fd?, ln1W, ln1B, qW, qB, kW, kB, vW, vB, outW,
 * outB, ln2W, ln2B, fc1W, fc1B, fc2W, fc2B}) -> handle: the block packed for the named build
 * (tensors as block_tensors takes them).
 */
static napi_value clip_pack_block(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  const fw_isa_t *isa = NULL, *all[2];
  char name[16] = "";
  napi_value v;
  size_t len = 0;
  if (napi_get_named_property(env, a.obj, "isa", &v) == napi_ok) napi_get_value_string_utf8(env, v, name, sizeof name, &len);
  for (int i = 0, n = forward_isas(all); i < n; i++) if (strcmp(all[i]->name, name) == 0) isa = all[i];
  if (!isa) {
    napi_throw_error(env, NULL, "clipPackBlock: 'isa' names no build this CPU runs");
    return NULL;
  }
  int D = (int)get_num(&a, "D"), I = (int)get_num(&a, "I"), H = (int)get_num(&a, "H"), act = (int)get_num(&a, "act"), threads = (int)get_num(&a, "threads");
  float eps = (float)get_num(&a, "eps");
  if (!a.bad && (D <= 0 || I <= 0 || H <= 0 || D % H || act < 0 || act > 2 || threads <= 0)) a.bad = 1, snprintf(a.err, sizeof a.err, "clipPackBlock: bad D, I, H, act or threads");
  size_t dd = (size_t)D * D, di = (size_t)D * I;
  tensor_arg_t t[BLOCK_TENSORS] = {
    {"ln1W", D, NULL, -1}, {"ln1B", D, NULL, -1}, {"ln2W", D, NULL, -1}, {"ln2B", D, NULL, -1}, {"qW", dd, NULL, -1}, {"kW", dd, NULL, -1}, {"vW", dd, NULL, -1}, {"outW", dd, NULL, -1},
    {"qB", D, NULL, -1}, {"kB", D, NULL, -1}, {"vB", D, NULL, -1}, {"outB", D, NULL, -1}, {"fc1W", di, NULL, -1}, {"fc1B", I, NULL, -1}, {"fc2W", di, NULL, -1}, {"fc2B", D, NULL, -1},
  };
  int fd = -1;
  if (!a.bad) block_tensors(&a, t, BLOCK_TENSORS, &fd);
  if (a.bad) return finish(&a);
  block_t *b = calloc(1, sizeof *b);
  size_t nvec = 4 * (size_t)D + 6 * (size_t)D + D + I + D;
  float *vec = b ? malloc(sizeof(float) * nvec) : NULL;
  int ok = vec != NULL;
  if (b) *b = (block_t){.isa = isa, .D = D, .I = I, .H = H, .act = act, .eps = eps, .vec = vec};
  if (ok) {
    /* vec: ln1w ln1b ln2w ln2b [D] | bqkv [3D] | scale [3D] | bo [D] | b1 [I] | b2 [D] */
    float *p = vec;
    float **dst[] = {&b->ln1w, &b->ln1b, &b->ln2w, &b->ln2b};
    for (int i = 0; i < 4; i++) *dst[i] = p, ok = ok && tensor_into(&t[i], fd, p), p += D;
    b->bqkv = p;
    for (int i = 8; i < 11; i++) ok = ok && tensor_into(&t[i], fd, p), p += D;
    b->scale = p;
    float qs = 1.0f / sqrtf((float)(D / H)); /* HF: q_proj(x) * head_dim ** -0.5 */
    for (int j = 0; j < 3 * D; j++) p[j] = j < D ? qs : 1.0f;
    p += 3 * D;
    b->bo = p, ok = ok && tensor_into(&t[11], fd, p), p += D;
    b->b1 = p, ok = ok && tensor_into(&t[13], fd, p), p += I;
    b->b2 = p, ok = ok && tensor_into(&t[15], fd, p);
    ok = ok && pack_tensors(isa, &b->qkv, &t[4], 3, D, fd, threads) && pack_tensors(isa, &b->o, &t[7], 1, D, fd, threads) &&
         pack_tensors(isa, &b->fc1, &t[12], 1, D, fd, threads) && pack_tensors(isa, &b->fc2, &t[14], 1, I, fd, threads);
  }
  if (!ok) {
    if (b) block_free_memory(b);
    free(b);
    napi_throw_error(env, NULL, "clipPackBlock: out of memory, or the weights could not be read from the file");
    return NULL;
  }
  b->bytes = (int64_t)(sizeof(float) * (nvec + (size_t)(b->qkv.np + b->o.np + b->fc1.np) * D * isa->nr + (size_t)b->fc2.np * I * isa->nr));
  napi_value handle;
  napi_create_external(env, b, block_finalize, NULL, &handle);
  int64_t total;
  napi_adjust_external_memory(env, b->bytes, &total);
  return handle;
}

static block_t *get_block(napi_env env, napi_value v) {
  napi_valuetype t;
  void *data = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

/* clipFree(handle): gives the block's memory back now (it is unusable afterwards); a running forward keeps it until it ends. */
static napi_value clip_free(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  block_t *b = argc == 1 ? get_block(env, argv[0]) : NULL;
  if (!b) {
    napi_throw_type_error(env, NULL, "clipFree(handle): not a block handle");
    return NULL;
  }
  if (!b->freed) {
    napi_adjust_external_memory(env, -b->bytes, NULL);
    b->freed = 1;
    if (b->users == 0) block_free_memory(b);
  }
  return NULL;
}

/* ---------------------------------------------------------------- the forward */

typedef struct {
  const fw_isa_t *isa;
  block_t **blocks;
  int nb, n, t, M, D, threads;
  int32_t *status; /* status[0] = 1: out of memory or no threads, nothing computed */
  float *y, *last; /* y [M, D]: the input on entry, the last block's output on return; last [M, D]: after the final LayerNorm (or NULL) */
  const float *finalW, *finalB;
  float finalEps;
  float *a, *qkv, *h, **kT, **s; /* scratch: a (LN output, then attention context) and h as A panels [P mr][D], [P mr][I]; qkv [M, 3D]; per thread */
  atomic_int *next;
  pthread_barrier_t barrier;
} run_t;

/* Every thread takes tasks 0..tasks-1 of phase *ph in turn from its counter, then waits for the others. */
static void phase(run_t *r, int *ph, int tasks, task_fn fn, void *ctx, int thread) {
  atomic_int *next = &r->next[(*ph)++];
  for (int i; (i = atomic_fetch_add(next, 1)) < tasks;) fn(ctx, i, thread);
  pthread_barrier_wait(&r->barrier);
}

static gemm_job_t gemm_job(const run_t *r, const float *a, const packed_t *b, const float *bias, const float *scale, int epi, int act, float *c) {
  int mr = r->isa->mr, panels = (r->M + mr - 1) / mr;
  int mpanels = GEMM_L2 / ((int)sizeof(float) * b->K * mr);
  mpanels = mpanels < 1 ? 1 : mpanels > panels ? panels : mpanels;
  int blocks = (panels + mpanels - 1) / mpanels, want = GEMM_TASKS * r->threads;
  int nchunks = blocks >= want ? 1 : (want + blocks - 1) / blocks;
  nchunks = nchunks > b->np ? b->np : nchunks;
  int chunk = (b->np + nchunks - 1) / nchunks;
  return (gemm_job_t){r->M, b->K, b->N, epi, act, mpanels, (b->np + chunk - 1) / chunk, chunk, a, bias, scale, b, c};
}

static void gemm_phase(run_t *r, int *ph, const gemm_job_t *g, int thread) {
  int panels = (g->M + r->isa->mr - 1) / r->isa->mr;
  phase(r, ph, ((panels + g->mpanels - 1) / g->mpanels) * g->nchunks, r->isa->gemm, (void *)g, thread);
}

/* The phases of every block in order, then the final LayerNorm; each thread runs this same sequence. */
static void forward_thread(run_t *r, int thread) {
  const fw_isa_t *isa = r->isa;
  int ph = 0, M = r->M, lnTasks = (M + isa->mr - 1) / isa->mr;
  for (int l = 0; l < r->nb; l++) {
    const block_t *b = r->blocks[l];
    int D = b->D;
    ln_job_t ln1 = {r->y, b->ln1w, b->ln1b, r->a, M, D, 1, b->eps};
    phase(r, &ph, lnTasks, isa->layer_norm, &ln1, thread);
    gemm_job_t qkv = gemm_job(r, r->a, &b->qkv, b->bqkv, b->scale, EPI_BIAS_SCALE, 0, r->qkv);
    gemm_phase(r, &ph, &qkv, thread);
    attn_job_t at = {r->qkv, r->a, r->kT, r->s, r->t, b->H, D / b->H, D};
    phase(r, &ph, r->n * b->H, isa->attention, &at, thread);
    gemm_job_t o = gemm_job(r, r->a, &b->o, b->bo, NULL, EPI_BIAS_RESIDUAL, 0, r->y);
    gemm_phase(r, &ph, &o, thread);
    ln_job_t ln2 = {r->y, b->ln2w, b->ln2b, r->a, M, D, 1, b->eps};
    phase(r, &ph, lnTasks, isa->layer_norm, &ln2, thread);
    gemm_job_t fc1 = gemm_job(r, r->a, &b->fc1, b->b1, NULL, EPI_BIAS_ACT_PACKED, b->act, r->h);
    gemm_phase(r, &ph, &fc1, thread);
    gemm_job_t fc2 = gemm_job(r, r->h, &b->fc2, b->b2, NULL, EPI_BIAS_RESIDUAL, 0, r->y);
    gemm_phase(r, &ph, &fc2, thread);
  }
  if (r->last) {
    ln_job_t fin = {r->y, r->finalW, r->finalB, r->last, M, r->D, 0, r->finalEps};
    phase(r, &ph, lnTasks, isa->layer_norm, &fin, thread);
  }
}

typedef struct { run_t *r; int thread; } forward_arg_t;

static void *forward_worker(void *arg) {
  forward_arg_t *f = arg;
  forward_thread(f->r, f->thread);
  return NULL;
}

/*
 * The forward's scratch, kept between calls and grown to the largest one (one forward runs at a
 * time: the mutex): a fresh 60 MiB for each batch of 32 would come back as zeroed pages, one fault
 * per 4 KiB, and glibc keeps freed blocks of that size in its heap anyway.
 */
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { float *base; size_t bytes; } scratch;

static float *scratch_for(size_t bytes) {
  if (bytes <= scratch.bytes) return scratch.base;
  if (scratch.base) munmap(scratch.base, scratch.bytes);
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  scratch.base = p == MAP_FAILED ? NULL : p;
  scratch.bytes = scratch.base ? bytes : 0;
  return scratch.base;
}

/* Zeroes the rows past M of an operand packed as A panels (the tiles read them; no phase writes them). */
static void zero_padding(float *packed, size_t M, int K, int mr) {
  size_t last = M / mr, used = M % mr;
  if (used == 0) return;
  float *panel = packed + last * K * mr;
  for (int k = 0; k < K; k++) memset(panel + (size_t)k * mr + used, 0, sizeof(float) * (mr - used));
}

static void forward_run(void *ctx) {
  run_t *r = ctx;
  int D = r->D, I = 1, hd = 0, T = r->threads, mr = r->isa->mr;
  for (int l = 0; l < r->nb; l++) {
    const block_t *b = r->blocks[l];
    I = b->I > I ? b->I : I, hd = D / b->H > hd ? D / b->H : hd;
  }
  size_t M = r->M, mpad = (M + mr - 1) / mr * mr, tp = ATTN_PAD(r->t, r->isa->nr / 2), per = hd * tp + ATTN_ROWS * tp;
  /* a [mpad D] | h [mpad I] | qkv [M 3D] | per thread: kT [hd tp], s [ATTN_ROWS tp] (floats; each part 64-byte aligned) */
  size_t na = (mpad * D + 15) / 16 * 16, nh = (mpad * I + 15) / 16 * 16, nq = (M * 3 * D + 15) / 16 * 16, nt = (per + 15) / 16 * 16;
  float *kT[64], *s[64];
  r->next = calloc(7 * r->nb + 1, sizeof(atomic_int));
  pthread_mutex_lock(&scratch_lock);
  float *base = r->next ? scratch_for(sizeof(float) * (na + nh + nq + T * nt)) : NULL;
  if (base) {
    r->a = base, r->h = base + na, r->qkv = base + na + nh;
    for (int i = 0; i < T; i++) kT[i] = r->qkv + nq + i * nt, s[i] = kT[i] + hd * tp;
    r->kT = kT, r->s = s;
    zero_padding(r->a, M, D, mr);
    zero_padding(r->h, M, I, mr);
    pthread_t th[64];
    forward_arg_t args[64];
    pthread_barrier_init(&r->barrier, NULL, T);
    int started = 1;
    for (int i = 1; i < T; i++) {
      args[i] = (forward_arg_t){r, i};
      if (pthread_create(&th[i], NULL, forward_worker, &args[i]) != 0) break;
      started++;
    }
    if (started == T) forward_thread(r, 0);
    else r->status[0] = 1; /* the barrier waits for T threads: without them nothing may run */
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->barrier);
  } else {
    r->status[0] = 1;
  }
  pthread_mutex_unlock(&scratch_lock);
  free(r->next);
}

/* Back on the JS thread: the blocks this forward held may now be freed. */
static void forward_done(void *ctx) {
  run_t *r = ctx;
  for (int l = 0; l < r->nb; l++) {
    block_t *b = r->blocks[l];
    if (--b->users == 0 && b->freed) block_free_memory(b);
  }
  free(r->blocks);
}

/*
 * clipForward({blocks: handle[], y: Float32Array [n t D], n, t, threads, status: Int32Array [1],
 * last?: Float32Array [n t D], finalW?, finalB?: Float32Array [D], finalEps?}) -> Promise: runs
 * the blocks in order on y in place (y holds the input on entry); with `last`, also the final
 * LayerNorm of the result into it. status[0] = 1 when memory or threads ran out (y is then undefined).
 */
static napi_value clip_forward(napi_env env, napi_callback_info info) {
  args_t a;
  if (!open_args(env, info, &a)) return NULL;
  napi_value arr, v;
  uint32_t nb = 0;
  bool isArray = false;
  if (napi_get_named_property(env, a.obj, "blocks", &arr) != napi_ok || napi_is_array(env, arr, &isArray) != napi_ok || !isArray) {
    napi_throw_type_error(env, NULL, "clipForward: 'blocks' must be an array of block handles");
    return NULL;
  }
  napi_get_array_length(env, arr, &nb);
  block_t **blocks = calloc(nb ? nb : 1, sizeof *blocks);
  const char *bad = NULL;
  for (uint32_t i = 0; i < nb && !bad; i++) {
    napi_get_element(env, arr, i, &v);
    blocks[i] = get_block(env, v);
    if (!blocks[i]) bad = "clipForward: 'blocks' holds something that is not a block handle";
    else if (blocks[i]->freed) bad = "clipForward: a block was freed";
    else if (blocks[i]->D != blocks[0]->D || blocks[i]->isa != blocks[0]->isa) bad = "clipForward: blocks of different widths or builds";
  }
  int n = (int)get_num(&a, "n"), t = (int)get_num(&a, "t"), threads = (int)get_num(&a, "threads");
  if (!bad && !a.bad && (n <= 0 || t <= 0 || threads <= 0 || threads > 64 || (nb == 0 && !has(&a, "last")))) bad = "clipForward: bad n, t or threads, or nothing to run";
  if (bad) {
    free(blocks);
    napi_throw_error(env, NULL, bad);
    return NULL;
  }
  int D = nb ? blocks[0]->D : (int)get_num(&a, "D");
  size_t M = (size_t)n * t;
  run_t r = {.isa = nb ? blocks[0]->isa : NULL, .blocks = blocks, .nb = (int)nb, .n = n, .t = t, .M = (int)M, .D = D, .threads = threads};
  r.y = SIZED(&a, "y", M * D);
  r.status = SIZED32(&a, "status", 1);
  if (has(&a, "last")) {
    r.last = SIZED(&a, "last", M * D);
    r.finalW = SIZED(&a, "finalW", D), r.finalB = SIZED(&a, "finalB", D), r.finalEps = (float)get_num(&a, "finalEps");
  }
  if (!r.isa) {
    const fw_isa_t *all[2];
    if (forward_isas(all) > 0) r.isa = all[0];
    else a.bad = 1, snprintf(a.err, sizeof a.err, "clipForward: no build for this CPU");
  }
  if (a.bad) {
    free(blocks);
    return finish(&a);
  }
  for (uint32_t i = 0; i < nb; i++) blocks[i]->users++;
  run_t *heap = malloc(sizeof *heap);
  *heap = r;
  return run_async_then(&a, "itd_clip_forward", forward_run, forward_done, heap);
}

/* exports.clip = {isas: names of the builds this CPU runs (widest first), packBlock, forward, free}; absent without any. */
void forward_register(napi_env env, napi_value exports) {
  const fw_isa_t *all[2];
  int n = forward_isas(all);
  if (n == 0) return;
  napi_value clip, names, s;
  napi_create_object(env, &clip);
  napi_create_array_with_length(env, n, &names);
  for (int i = 0; i < n; i++) napi_create_string_utf8(env, all[i]->name, NAPI_AUTO_LENGTH, &s), napi_set_element(env, names, i, s);
  napi_set_named_property(env, clip, "isas", names);
  export_fn(env, clip, "packBlock", clip_pack_block, NULL);
  export_fn(env, clip, "forward", clip_forward, NULL);
  export_fn(env, clip, "free", clip_free, NULL);
  napi_set_named_property(env, exports, "clip", clip);
}
