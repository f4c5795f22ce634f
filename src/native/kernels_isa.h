/*
 * The hot loops of kernels.c, one body compiled once per instruction set: kernels.c includes this
 * file several times, each under its own `#pragma GCC target` with ISA(name) (the symbol suffix),
 * ISA_NAME and VW (floats per GEMM vector: 8 for AVX2, 16 for AVX-512) defined, and picks one table
 * at run time. Only the GEMM micro-tile is wider on AVX-512 (its tile is MR x 2 VW): every output
 * element is still one sequential FMA chain over the same K order, and the sparse loops keep their
 * 8-lane partial sums, so results are the same whichever ISA runs.
 */
#define NR (2 * VW)

/* VW floats, unaligned loads/stores allowed. */
typedef float ISA(vf) __attribute__((vector_size(VW * 4), aligned(4)));

static float ISA(dot)(const float *a, const float *b, int n) {
  v8 acc = {0};
  int t = 0;
  for (; t + 8 <= n; t += 8) acc += *(const v8 *)(a + t) * *(const v8 *)(b + t);
  float s = 0;
  for (int i = 0; i < 8; i++) s += acc[i];
  for (; t < n; t++) s += a[t] * b[t];
  return s;
}

/* y += s x */
static void ISA(axpy)(float *y, float s, const float *x, int n) {
  int t = 0;
  v8 sv = {s, s, s, s, s, s, s, s};
  for (; t + 8 <= n; t += 8) *(v8 *)(y + t) += sv * *(const v8 *)(x + t);
  for (; t < n; t++) y[t] += s * x[t];
}

static void ISA(decode_task)(void *ctx, int task, int thread) {
  (void)thread;
  decode_t *c = ctx;
  int D = c->D, end = (task + 1) * ROW_CHUNK < c->B ? (task + 1) * ROW_CHUNK : c->B;
  float *acc = malloc(sizeof(float) * D);
  for (int b = task * ROW_CHUNK; b < end; b++) {
    const float *x = c->x + (size_t)b * D;
    memcpy(acc, c->bPre, sizeof(float) * D);
    for (int p = c->rowPtr[b]; p < c->rowPtr[b + 1]; p++) {
      if (p + 1 < c->rowPtr[c->B]) prefetch_row(c->wDec + (size_t)c->lat[p + 1] * D, D);
      ISA(axpy)(acc, c->val[p], c->wDec + (size_t)c->lat[p] * D, D);
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

/* PyTorch Adam: p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). */
static void ISA(adam)(const backward_t *c, float *p, float *m, float *v, const float *grad, int len) {
  for (int t = 0; t < len; t++) {
    float mi = m[t] = c->b1 * m[t] + (1 - c->b1) * grad[t];
    float vi = v[t] = c->b2 * v[t] + (1 - c->b2) * grad[t] * grad[t];
    p[t] -= c->stepSize * (mi / (sqrtf(vi) * c->rsqrtBc2 + c->eps));
  }
}

static void ISA(backward_task)(void *ctx, int task, int thread) {
  (void)thread;
  backward_t *c = ctx;
  int D = c->D, j1 = (task + 1) * LATENT_CHUNK < c->n ? (task + 1) * LATENT_CHUNK : c->n;
  float *gDec = malloc(sizeof(float) * D), *gEnc = malloc(sizeof(float) * D);
  double *dbPre = c->dbPre + (size_t)task * D;
  memset(dbPre, 0, sizeof(double) * D);
  for (int j = task * LATENT_CHUNK; j < j1; j++) {
    size_t w = (size_t)j * D;
    float *wd = c->wDec + w, *we = c->wEnc + w;
    if (c->adam && j + 1 < j1) { /* the next latent's six dense rows: the Adam passes are bound by memory latency */
      const float *next[] = {wd + D, we + D, c->mWDec + w + D, c->vWDec + w + D, c->mWEnc + w + D, c->vWEnc + w + D};
      for (int s = 0; s < 6; s++) prefetch_row(next[s], D);
    }
    memset(gDec, 0, sizeof(float) * D);
    memset(gEnc, 0, sizeof(float) * D);
    float gB = 0;
    for (int p = c->colPtr[j]; p < c->colPtr[j + 1]; p++) {
      const float *g = c->g + (size_t)c->colRow[p] * D, *xc = c->xc + (size_t)c->colRow[p] * D;
      if (p + 1 < c->colPtr[c->n]) prefetch_row(c->g + (size_t)c->colRow[p + 1] * D, D), prefetch_row(c->xc + (size_t)c->colRow[p + 1] * D, D);
      float dz = ISA(dot)(wd, g, D);
      ISA(axpy)(gDec, c->colVal[p], g, D);
      ISA(axpy)(gEnc, dz, xc, D);
      gB += dz;
    }
    int s = c->auxSlot[j];
    if (s >= 0) {
      ISA(axpy)(gDec, 1, c->auxWDec + (size_t)s * D, D);
      ISA(axpy)(gEnc, 1, c->auxWEnc + (size_t)s * D, D);
      gB += c->auxBEnc[s];
    }
    for (int t = 0; t < D; t++) dbPre[t] -= (double)gB * we[t];
    if (!c->adam) {
      memcpy(c->gWDec + w, gDec, sizeof(float) * D);
      memcpy(c->gWEnc + w, gEnc, sizeof(float) * D);
      c->gBEnc[j] = gB;
      continue;
    }
    ISA(axpy)(gDec, -ISA(dot)(gDec, wd, D), wd, D); /* tangent to the unit sphere */
    ISA(adam)(c, wd, c->mWDec + w, c->vWDec + w, gDec, D);
    float nrm = sqrtf(ISA(dot)(wd, wd, D));
    if (nrm > 0) for (int t = 0; t < D; t++) wd[t] /= nrm;
    ISA(adam)(c, we, c->mWEnc + w, c->vWEnc + w, gEnc, D);
    ISA(adam)(c, c->bEnc + j, c->mBEnc + j, c->vBEnc + j, &gB, 1);
  }
  free(gDec);
  free(gEnc);
}

/*
 * c[MR][NR] = sum_kk a[kk][MR] b[kk][NR]: 2 MR accumulators (named: arrays of them get spilled), B
 * loaded once per kk, A broadcast. With cont set, the sums go on from the values in c (the next K
 * chunk of the same FMA chains: storing a chain in c between chunks rounds nothing), else from 0.
 */
_Static_assert(MR == 6, "micro_tile spells out MR = 6 rows");
#define TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define TILE_ZERO(i) ISA(vf) c##i##0 = {0}, c##i##1 = {0};
#define TILE_LOAD(i) c##i##0 = *(const ISA(vf) *)(c + i * NR); c##i##1 = *(const ISA(vf) *)(c + i * NR + VW);
#define TILE_FMA(i) c##i##0 += a[i] * b0; c##i##1 += a[i] * b1;
#define TILE_STORE(i) *(ISA(vf) *)(c + i * NR) = c##i##0; *(ISA(vf) *)(c + i * NR + VW) = c##i##1;
__attribute__((noinline)) static void ISA(micro_tile)(const float *restrict a, const float *restrict b, int K, float *restrict c, int cont) {
  TILE_ROWS(TILE_ZERO)
  if (cont) { TILE_ROWS(TILE_LOAD) }
#pragma GCC unroll 4
  for (int kk = 0; kk < K; kk++, a += MR, b += NR) {
    ISA(vf) b0 = *(const ISA(vf) *)b, b1 = *(const ISA(vf) *)(b + VW);
    TILE_ROWS(TILE_FMA)
  }
  TILE_ROWS(TILE_STORE)
}
#undef TILE_ROWS
#undef TILE_ZERO
#undef TILE_LOAD
#undef TILE_FMA
#undef TILE_STORE

/* Bit jj set where a tile row's value jj reaches the row's gate. */
static unsigned ISA(tile_row_hits)(const float *v, float gate) {
  unsigned hits = 0;
  for (int jj = 0; jj < NR; jj++) hits |= (unsigned)(v[jj] >= gate) << jj;
  return hits;
}

/*
 * One block of NC latents: packs its W_enc rows as NR-wide panels (in runs of ENC_KB inputs, so the
 * strided stores stay within L1), then, for each run of ENC_RB A panels and each panel of NR
 * latents, runs the tiles in K chunks of ENC_KC (the B chunk stays in L1; the tiles' running sums
 * wait in the thread's tile buffer), adds the biases and feeds the rows' top-k lists.
 */
static void ISA(encode_block)(void *ctx, int blk, int thread) {
  encode_t *c = ctx;
  int D = c->D, j0 = blk * NC, nj = c->n - j0 < NC ? c->n - j0 : NC, q1 = (nj + NR - 1) / NR;
  float *bp = c->bp[thread], *tiles = c->tiles[thread];
  topk_row_t *rows = c->lists[thread];
  /* The block's biases; padding latents past n get -inf so they can never be selected. */
  float bias[NC] __attribute__((aligned(64)));
  for (int jj = 0; jj < q1 * NR; jj++) bias[jj] = jj < nj ? c->bEnc[j0 + jj] : -INFINITY;
  for (int q = 0; q < q1; q++)
    for (int k0 = 0; k0 < D; k0 += ENC_KB)
      for (int jj = 0; jj < NR; jj++) {
        int j = j0 + q * NR + jj, k1 = k0 + ENC_KB < D ? k0 + ENC_KB : D;
        const float *w = c->wEnc + (size_t)j * D;
        float *dst = bp + (size_t)q * D * NR + jj;
        if (k1 + ENC_KB < D) __builtin_prefetch(w + k1 + ENC_KB);
        for (int kk = k0; kk < k1; kk++) dst[kk * NR] = j < c->n ? w[kk] : 0;
      }
  /* Rows in runs of ENC_RB panels: a run's A panels stay in L2 while every latent panel of the block passes. */
  for (int p0 = 0; p0 < c->panels; p0 += ENC_RB) {
    int p1 = p0 + ENC_RB < c->panels ? p0 + ENC_RB : c->panels, r1 = p1 * MR < c->B ? p1 * MR : c->B;
    for (int q = 0; q < q1; q++) {
      const float *b = bp + (size_t)q * D * NR, *bq = bias + q * NR;
      for (int k0 = 0; k0 < D; k0 += ENC_KC) {
        int kc = D - k0 < ENC_KC ? D - k0 : ENC_KC;
        for (int p = p0; p < p1; p++)
          ISA(micro_tile)(c->ap + ((size_t)p * D + k0) * MR, b + (size_t)k0 * NR, kc, tiles + (size_t)p * MR * NR, k0 > 0);
      }
      int jb = j0 + q * NR;
      for (int row = p0 * MR; row < r1; row++) {
        float *v = tiles + (size_t)row * NR; /* panel p's tile row i is row p MR + i */
        for (int jj = 0; jj < NR; jj++) v[jj] += bq[jj];
        topk_row_t *r = &rows[row];
        /*
         * Every list's gate is the k-th best of some of this row's values (or -inf), so at most the
         * row's final k-th best: a value under any of them cannot make the top k (ties still pass),
         * whichever thread holds it. The gates a cut raises while the hits go in only let more through.
         */
        float gate = r->gate;
        for (int t = 0; t < c->nt; t++) {
          float other;
          __atomic_load(&c->lists[t][row].gate, &other, __ATOMIC_RELAXED);
          if (other > gate) gate = other;
        }
        for (unsigned hits = ISA(tile_row_hits)(v, gate); hits; hits &= hits - 1) {
          int jj = __builtin_ctz(hits);
          topk_push(r, c->k, v[jj], jb + jj);
        }
      }
    }
  }
}

static void ISA(gemm_pack_b)(void *ctx, int q, int thread) {
  (void)thread;
  gemm_t *c = ctx;
  float *dst = c->bp + (size_t)q * c->K * NR;
  for (int kk = 0; kk < c->K; kk++)
    for (int jj = 0; jj < NR; jj++) { int col = q * NR + jj; dst[kk * NR + jj] = col < c->N ? c->b[kk * c->rsB + col * c->csB] : 0; }
}

static void ISA(gemm_task)(void *ctx, int task, int thread) {
  (void)thread;
  gemm_t *c = ctx;
  int tm = (c->pm + GEMM_MB - 1) / GEMM_MB, p0 = (task % tm) * GEMM_MB, q0 = (task / tm) * GEMM_NB;
  int p1 = p0 + GEMM_MB < c->pm ? p0 + GEMM_MB : c->pm, q1 = q0 + GEMM_NB < c->qn ? q0 + GEMM_NB : c->qn;
  float tile[MR * NR] __attribute__((aligned(64)));
  for (int k0 = 0; k0 < c->K; k0 += KC) {
    int kc = c->K - k0 < KC ? c->K - k0 : KC;
    for (int q = q0; q < q1; q++)
      for (int p = p0; p < p1; p++) {
        ISA(micro_tile)(c->ap + ((size_t)p * c->K + k0) * MR, c->bp + ((size_t)q * c->K + k0) * NR, kc, tile, 0);
        for (int i = 0; i < MR && p * MR + i < c->M; i++) {
          float *dst = c->c + (size_t)(p * MR + i) * c->N + q * NR;
          int w = c->N - q * NR < NR ? c->N - q * NR : NR;
          if (k0 == 0) memcpy(dst, tile + i * NR, sizeof(float) * w);
          else for (int jj = 0; jj < w; jj++) dst[jj] += tile[i * NR + jj];
        }
      }
  }
}

/*
 * |w| <= 127.5 scale here (see quant8_t), so the code fits in 1..255 without JS's modulo, and
 * js_round can work in int32 (a branch-free floor the vectoriser takes).
 */
static inline __attribute__((always_inline)) void ISA(q8_block_fast)(const float *restrict w, int n, double scale, uint8_t *restrict out) {
  for (int i = 0; i < n; i++) {
    double d = (double)w[i] / scale;
    int f = (int)d;
    f -= d < (double)f; /* floor */
    f += d - (double)f >= 0.5;
    out[i] = (uint8_t)(f + 128);
  }
}

/* Largest |w| of a block as f32 bits (integer max: NaN patterns win, as Math.max lets them). */
static inline __attribute__((always_inline)) uint32_t ISA(q8_max_bits)(const float *w, int n) {
  uint32_t m = 0;
  for (int i = 0; i < n; i++) {
    uint32_t b;
    memcpy(&b, w + i, 4);
    b &= 0x7fffffffu;
    m = b > m ? b : m;
  }
  return m;
}

static void ISA(q8_block)(const float *w, int n, float *scale, uint8_t *out) {
  uint32_t m = n == Q8_BLOCK ? ISA(q8_max_bits)(w, Q8_BLOCK) : ISA(q8_max_bits)(w, n);
  float s = *scale = q8_scale(m);
  if (m >= 0x7f800000u || !(s >= FLT_MIN)) q8_block_exact(w, n, s, out);
  else if (n == Q8_BLOCK) ISA(q8_block_fast)(w, Q8_BLOCK, s, out); /* constant trip count: fully vectorised */
  else ISA(q8_block_fast)(w, n, s, out);
  memset(out + n, 128, Q8_BLOCK - n);
}

static void ISA(quantize8_task)(void *ctx, int task, int thread) {
  (void)thread;
  const quant8_t *c = ctx;
  int r1 = (task + 1) * Q8_ROWS < c->rows ? (task + 1) * Q8_ROWS : c->rows;
  for (int r = task * Q8_ROWS; r < r1; r++)
    for (int b = 0; b < c->blocks; b++) {
      size_t k = (size_t)r * c->blocks + b;
      int n = c->cols - b * Q8_BLOCK < Q8_BLOCK ? c->cols - b * Q8_BLOCK : Q8_BLOCK;
      ISA(q8_block)(c->w + (size_t)r * c->cols + (size_t)b * Q8_BLOCK, n, c->scales + k, c->codes + k * Q8_BLOCK);
    }
}

static const isa_t ISA(isa) = {
  ISA_NAME, NR, ISA(decode_task), ISA(backward_task), ISA(encode_block), ISA(gemm_pack_b), ISA(gemm_task), ISA(quantize8_task),
};

#undef NR
