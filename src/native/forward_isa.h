/*
 * The hot loops of forward.c, one body per instruction set: forward.c includes this file under
 * each `#pragma GCC target` with FW(name) (the symbol suffix), FW_NAME, VW (floats per vector) and
 * FMR (rows of the GEMM tile) defined. The GEMM tile is FMR x 2 VW accumulators held in registers
 * (AVX-512: 14 x 32, 28 of the 32 zmm; AVX2: 6 x 16, 12 of the 16 ymm). Every output element is
 * one FMA chain over k = 0..K-1 in order, whatever the tile, the task split or the thread count.
 */
#define FNR (2 * VW)

typedef float FW(vf) __attribute__((vector_size(VW * 4), aligned(4)));

/* x in every lane: one broadcast (x - 0 is exactly x, so the compiler drops the subtraction; x + 0 is not, for x = -0). */
static inline FW(vf) FW(splat)(float x) { return x - (FW(vf)){0}; }

/*
 * e^x to ~2 ulp, written so that loops over it vectorise: x = n ln2 + r (|r| <= ln2 / 2, ln2 in
 * two parts), e^r by its Taylor series to r^7 (remainder < 6e-9 relative), times 2^n built in the
 * exponent bits. x is clamped to [-87.3, 88]: 2^n stays a normal float, so e^x of a very negative
 * x is 1.2e-38 instead of 0, and e^x saturates at e^88 (both far below float32 rounding where used).
 */
static inline float FW(exp)(float x) {
  x = x < -87.3f ? -87.3f : x > 88.0f ? 88.0f : x;
  float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  return p * scale;
}

/*
 * erf(x) by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, about one float32 ulp of 1 + erf, which
 * is what GELU uses), odd in x; vectorisable, unlike libm's erff. e^-x^2 underflows to ~1e-38 for
 * |x| > 9.3, where the formula's remainder is already below 1e-45.
 */
static inline float FW(erf)(float x) {
  float a = x < 0 ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  float y = 1.0f - p * t * FW(exp)(-a * a);
  return x < 0 ? -y : y;
}

/* x[0..n) = act(x), act as config.json's hidden_act names it (see act_t). */
static void FW(activate)(float *restrict x, int n, int act) {
  switch (act) {
    case ACT_QUICK_GELU: /* x sigmoid(1.702 x) */
      for (int i = 0; i < n; i++) x[i] = x[i] / (1.0f + FW(exp)(-1.702f * x[i]));
      break;
    case ACT_GELU: /* 0.5 x (1 + erf(x / sqrt 2)) */
      for (int i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + FW(erf)(x[i] * 0.70710678118654752f));
      break;
    case ACT_GELU_TANH: /* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
      for (int i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + tanhf(0.79788456080286536f * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
      break;
  }
}

/* tile[FMR][FNR] = sum_k a[k][FMR] b[k][FNR] (a: one packed A panel, b: one packed B panel). */
__attribute__((noinline)) static void FW(tile)(const float *restrict a, const float *restrict b, int K, float *restrict tile) {
  FW(vf) c0[FMR], c1[FMR];
#pragma GCC unroll 16
  for (int i = 0; i < FMR; i++) c0[i] = c1[i] = (FW(vf)){0};
  for (int k = 0; k < K; k++, a += FMR, b += FNR) {
    FW(vf) b0 = *(const FW(vf) *)b, b1 = *(const FW(vf) *)(b + VW);
#pragma GCC unroll 16
    for (int i = 0; i < FMR; i++) {
      FW(vf) av = FW(splat)(a[i]);
      c0[i] += av * b0;
      c1[i] += av * b1;
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < FMR; i++) {
    *(FW(vf) *)(tile + i * FNR) = c0[i];
    *(FW(vf) *)(tile + i * FNR + VW) = c1[i];
  }
}

/* Packs w [N, K] (a PyTorch Linear weight, out x in) as B = w^T panels [np][K][FNR], columns past N zero; writes in order. */
static void FW(pack_task)(void *ctx, int q, int thread) {
  (void)thread;
  const pack_job_t *p = ctx;
  float *dst = p->out + (size_t)q * p->K * FNR;
  const float *rows[FNR];
  int valid = p->N - q * FNR < FNR ? p->N - q * FNR : FNR;
  for (int jj = 0; jj < FNR; jj++) rows[jj] = p->w + (size_t)(q * FNR + (jj < valid ? jj : 0)) * p->K;
  for (int k = 0; k < p->K; k++, dst += FNR)
    for (int jj = 0; jj < FNR; jj++) dst[jj] = jj < valid ? rows[jj][k] : 0;
}

/* Where row r, column j of an operand packed as A panels [ceil(M / FMR)][K][FMR] lives. */
#define PACKED(base, K, r, j) ((base) + ((size_t)((r) / FMR) * (K) + (j)) * FMR + (r) % FMR)

/* dst[jj][i] = tile[i][jj] for a full tile (constant bounds: the compiler vectorises it). */
static inline void FW(transpose_tile)(const float *restrict tile, float *restrict dst) {
  for (int jj = 0; jj < FNR; jj++)
#pragma GCC unroll 16
    for (int i = 0; i < FMR; i++) dst[jj * FMR + i] = tile[i * FNR + jj];
}

/*
 * The GEMM's tail on one tile (rows r0.., columns j0..): v = acc + bias[j], then c = v s_j
 * (row-major C), c += v (row-major C, the residual stream), or act(v) written as the A panels of
 * the next GEMM (C packed with K = N).
 */
static inline void FW(epilogue)(const gemm_job_t *g, float *tile, int r0, int rows, int j0, int cols) {
  const float *bias = g->bias + j0;
  for (int i = 0; i < rows; i++) {
    float *acc = tile + i * FNR, *out = g->c + (size_t)(r0 + i) * g->ldc + j0;
    switch (g->epi) {
      case EPI_BIAS_SCALE:
        for (int jj = 0; jj < cols; jj++) out[jj] = (acc[jj] + bias[jj]) * g->scale[j0 + jj];
        break;
      case EPI_BIAS_RESIDUAL:
        for (int jj = 0; jj < cols; jj++) out[jj] += acc[jj] + bias[jj];
        break;
      case EPI_BIAS_ACT_PACKED:
        for (int jj = 0; jj < cols; jj++) acc[jj] += bias[jj];
        FW(activate)(acc, cols, g->act);
        break;
    }
  }
  if (g->epi != EPI_BIAS_ACT_PACKED) return;
  /* the tile's rows are one panel's (r0 is a multiple of FMR): each column is FMR consecutive floats there */
  float *dst = PACKED(g->c, g->b->N, r0, j0);
  if (rows == FMR && cols == FNR) FW(transpose_tile)(tile, dst);
  else
    for (int jj = 0; jj < cols; jj++, dst += FMR)
      for (int i = 0; i < rows; i++) dst[i] = tile[i * FNR + jj];
}

/* One task: the A panels of one row block x the B panels of one column chunk (see gemm_job); A comes packed. */
static void FW(gemm_task)(void *ctx, int task, int thread) {
  (void)thread;
  const gemm_job_t *g = ctx;
  int K = g->K, panels = (g->M + FMR - 1) / FMR;
  int p0 = (task / g->nchunks) * g->mpanels, p1 = p0 + g->mpanels < panels ? p0 + g->mpanels : panels;
  int q0 = (task % g->nchunks) * g->chunk, q1 = q0 + g->chunk < g->b->np ? q0 + g->chunk : g->b->np;
  float tile[FMR * FNR] __attribute__((aligned(64)));
  for (int q = q0; q < q1; q++) {
    int j0 = q * FNR, cols = g->b->N - j0 < FNR ? g->b->N - j0 : FNR;
    for (int p = p0; p < p1; p++) {
      FW(tile)(g->a + (size_t)p * K * FMR, g->b->w + (size_t)q * K * FNR, K, tile);
      int r0 = p * FMR;
      FW(epilogue)(g, tile, r0, g->M - r0 < FMR ? g->M - r0 : FMR, j0, cols);
    }
  }
}

/* Mean and 1 / sqrt(var + eps) of a row of D (biased variance, as torch), by VW-lane partial sums. */
static inline void FW(row_stats)(const float *x, int D, float eps, float *mean, float *inv) {
  FW(vf) s = {0};
  int d = 0;
  for (; d + VW <= D; d += VW) s += *(const FW(vf) *)(x + d);
  float sum = 0;
  for (int l = 0; l < VW; l++) sum += s[l];
  for (; d < D; d++) sum += x[d];
  float m = sum / D;
  FW(vf) q = {0};
  for (d = 0; d + VW <= D; d += VW) {
    FW(vf) e = *(const FW(vf) *)(x + d) - m;
    q += e * e;
  }
  float var = 0;
  for (int l = 0; l < VW; l++) var += q[l];
  for (; d < D; d++) var += (x[d] - m) * (x[d] - m);
  *mean = m;
  *inv = 1.0f / sqrtf(var / D + eps);
}

/*
 * LayerNorm, (x - mean) inv w + b, of FMR rows of x [M, D] (task p: rows p FMR..) into y: row-major,
 * or as the next GEMM's A panel p (written column by column, FMR consecutive floats each).
 */
static void FW(layer_norm_task)(void *ctx, int p, int thread) {
  (void)thread;
  const ln_job_t *c = ctx;
  int D = c->D, r0 = p * FMR, rows = c->M - r0 < FMR ? c->M - r0 : FMR;
  float mean[FMR], inv[FMR];
  for (int i = 0; i < rows; i++) FW(row_stats)(c->x + (size_t)(r0 + i) * D, D, c->eps, mean + i, inv + i);
  if (!c->packed) {
    for (int i = 0; i < rows; i++) {
      const float *x = c->x + (size_t)(r0 + i) * D;
      float *y = c->y + (size_t)(r0 + i) * D;
      for (int d = 0; d < D; d++) y[d] = (x[d] - mean[i]) * inv[i] * c->w[d] + c->b[d];
    }
    return;
  }
  float *dst = PACKED(c->y, D, r0, 0);
  const float *x = c->x + (size_t)r0 * D;
  for (int d = 0; d < D; d++, dst += FMR)
    for (int i = 0; i < rows; i++) dst[i] = (x[(size_t)i * D + d] - mean[i]) * inv[i] * c->w[d] + c->b[d];
}

/*
 * Causal attention of one (prompt, head): scores s_ij = q_i . k_j for j <= i (q already scaled),
 * p_i = softmax(s_i), ctx_i = sum_j p_ij v_j. qkv rows are [q | k | v] (3D wide); ctx [M, D] is
 * written as the out-projection's A panels. Rows go ATTN_ROWS at a time, sharing each load of k
 * and v; a row's p_ij past its own i are zero, so each row's sums are its own whatever its group.
 * Scratch (the thread's): kT [hd][tp], k transposed and zero-padded to tp = t rounded up to 4 VW;
 * s [ATTN_ROWS][tp].
 */
static void FW(attention_task)(void *ctx, int task, int thread) {
  const attn_job_t *c = ctx;
  float *kT = c->kT[thread], *s = c->s[thread];
  int b = task / c->H, h = task % c->H, t = c->t, hd = c->hd, D = c->D, ld = 3 * D, tp = ATTN_PAD(t, VW);
  const float *base = c->qkv + (size_t)b * t * ld + h * hd;
  for (int d = 0; d < hd; d++)
    for (int j = 0; j < tp; j++) kT[(size_t)d * tp + j] = j < t ? base[(size_t)j * ld + D + d] : 0;
  for (int i0 = 0; i0 < t; i0 += ATTN_ROWS) {
    int rows = t - i0 < ATTN_ROWS ? t - i0 : ATTN_ROWS, n = i0 + rows;
    const float *q[ATTN_ROWS];
    for (int r = 0; r < ATTN_ROWS; r++) q[r] = base + (size_t)(i0 + (r < rows ? r : 0)) * ld;
    for (int j0 = 0; j0 < n; j0 += 2 * VW) {
      FW(vf) a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
      for (int d = 0; d < hd; d++) {
        const float *kr = kT + (size_t)d * tp + j0;
        FW(vf) k0 = *(const FW(vf) *)kr, k1 = *(const FW(vf) *)(kr + VW);
        FW(vf) qa = FW(splat)(q[0][d]), qb = FW(splat)(q[1][d]), qc = FW(splat)(q[2][d]), qd = FW(splat)(q[3][d]);
        a0 += qa * k0, a1 += qa * k1, b0 += qb * k0, b1 += qb * k1;
        c0 += qc * k0, c1 += qc * k1, d0 += qd * k0, d1 += qd * k1;
      }
      float *sj = s + j0;
      *(FW(vf) *)sj = a0, *(FW(vf) *)(sj + VW) = a1, *(FW(vf) *)(sj + tp) = b0, *(FW(vf) *)(sj + tp + VW) = b1;
      *(FW(vf) *)(sj + 2 * tp) = c0, *(FW(vf) *)(sj + 2 * tp + VW) = c1, *(FW(vf) *)(sj + 3 * tp) = d0, *(FW(vf) *)(sj + 3 * tp + VW) = d1;
    }
    for (int r = 0; r < rows; r++) {
      float *sr = s + (size_t)r * tp, m = sr[0];
      int nr = i0 + r + 1;
      for (int j = 1; j < nr; j++) m = sr[j] > m ? sr[j] : m;
      for (int j = 0; j < nr; j++) sr[j] = FW(exp)(sr[j] - m);
      float sum = 0;
      for (int j = 0; j < nr; j++) sum += sr[j];
      for (int j = 0; j < nr; j++) sr[j] /= sum;
      for (int j = nr; j < n; j++) sr[j] = 0;
    }
    for (int r = rows; r < ATTN_ROWS; r++) memset(s + (size_t)r * tp, 0, sizeof(float) * n);
    float out[ATTN_ROWS][hd] __attribute__((aligned(64)));
    int e = 0;
    for (; e + 2 * VW <= hd; e += 2 * VW) {
      FW(vf) a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
      for (int j = 0; j < n; j++) {
        const float *v = base + (size_t)j * ld + 2 * D + e;
        FW(vf) v0 = *(const FW(vf) *)v, v1 = *(const FW(vf) *)(v + VW);
        FW(vf) pa = FW(splat)(s[j]), pb = FW(splat)(s[tp + j]), pc = FW(splat)(s[2 * tp + j]), pd = FW(splat)(s[3 * tp + j]);
        a0 += pa * v0, a1 += pa * v1, b0 += pb * v0, b1 += pb * v1;
        c0 += pc * v0, c1 += pc * v1, d0 += pd * v0, d1 += pd * v1;
      }
      *(FW(vf) *)(out[0] + e) = a0, *(FW(vf) *)(out[0] + e + VW) = a1, *(FW(vf) *)(out[1] + e) = b0, *(FW(vf) *)(out[1] + e + VW) = b1;
      *(FW(vf) *)(out[2] + e) = c0, *(FW(vf) *)(out[2] + e + VW) = c1, *(FW(vf) *)(out[3] + e) = d0, *(FW(vf) *)(out[3] + e + VW) = d1;
    }
    for (int r = 0; r < rows; r++) {
      for (int d = e; d < hd; d++) out[r][d] = 0;
      for (int j = 0; j < n && e < hd; j++) {
        const float *v = base + (size_t)j * ld + 2 * D;
        for (int d = e; d < hd; d++) out[r][d] += s[(size_t)r * tp + j] * v[d];
      }
      for (int d = 0; d < hd; d++) *PACKED(c->ctx, D, i0 + r + b * t, h * hd + d) = out[r][d];
    }
  }
}

static const fw_isa_t FW(isa) = {FW_NAME, FMR, FNR, FW(pack_task), FW(gemm_task), FW(layer_norm_task), FW(attention_task)};

#undef PACKED

#undef FNR
