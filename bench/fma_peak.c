/*
 * The machine's float32 FMA peak for bench:encode: each of T threads runs independent chains of
 * vector FMAs on registers (enough chains to cover FMA latency x issue width), widest ISA the
 * compiler targets with -march=native (AVX-512, else AVX2+FMA). Prints two GFLOP/s figures (2 flops
 * per lane per FMA), each the best of a few rounds: by wall clock over all threads, and per thread
 * CPU second times THREADS (what the cores give when no other job shares them), then the vector bits.
 * usage: fma_peak THREADS
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1(x) _mm512_set1_ps(x)
#define ADD(a, b) _mm512_add_ps(a, b)
static float lane0(vec v) { return _mm512_cvtss_f32(v); }
#elif defined(__FMA__)
typedef __m256 vec;
#define LANES 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1(x) _mm256_set1_ps(x)
#define ADD(a, b) _mm256_add_ps(a, b)
static float lane0(vec v) { return _mm256_cvtss_f32(v); }
#else
#error "fma_peak needs FMA (x86-64 with AVX2/FMA or AVX-512)"
#endif

#define CHAINS 16
#define ITERS 20000000L

static volatile float sink;

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *work(void *arg) {
  double *cpu = arg;
  double c0 = cpu_seconds();
  vec acc[CHAINS];
  const vec m = SET1(0.999999f), a = SET1(1e-7f);
  for (int j = 0; j < CHAINS; j++) acc[j] = SET1((float)j);
  for (long i = 0; i < ITERS; i++) {
#pragma GCC unroll 16
    for (int j = 0; j < CHAINS; j++) acc[j] = FMA(acc[j], m, a);
  }
  vec s = acc[0];
  for (int j = 1; j < CHAINS; j++) s = ADD(s, acc[j]);
  sink = lane0(s);
  *cpu = cpu_seconds() - c0;
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > 1024) return 2;
  pthread_t *ids = malloc(sizeof(pthread_t) * threads);
  double *cpu = malloc(sizeof(double) * threads);
  const double flops = 2.0 * LANES * CHAINS * (double)ITERS;  // per thread
  double best_wall = 0, best_cpu = 0;
  for (int round = 0; round < 3; round++) {
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, work, &cpu[i]);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    double wall = flops * threads / (now() - t0) / 1e9, per_cpu = 0;
    for (int i = 0; i < threads; i++) per_cpu += flops / cpu[i] / 1e9;
    if (wall > best_wall) best_wall = wall;
    if (per_cpu > best_cpu) best_cpu = per_cpu;
  }
  printf("%.1f %.1f %d\n", best_wall, best_cpu, LANES * 32);
  free(ids);
  free(cpu);
  return 0;
}
