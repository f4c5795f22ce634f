/*
 * What the addon's translation units (kernels.c, forward.c) share: the fork/join thread pool,
 * reading the one argument object every kernel takes, and running work off the JS thread behind a
 * promise. Static, so each unit has its own copy and nothing else is exported from the .node file.
 */
#pragma once
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- thread pool (fork/join per call) */

typedef void (*task_fn)(void *ctx, int task, int thread);

typedef struct { task_fn fn; void *ctx; int tasks; atomic_int next; } job_t;
typedef struct { job_t *job; int id; } worker_t;

static inline void *worker(void *arg) {
  worker_t *w = arg;
  for (int i; (i = atomic_fetch_add(&w->job->next, 1)) < w->job->tasks;) w->job->fn(w->job->ctx, i, w->id);
  return NULL;
}

static inline int thread_count(void) {
  const char *env = getenv("ITD_THREADS");
  int n = env ? atoi(env) : 0;
  if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (n > 64 ? 64 : n) : 1;
}

/* Runs fn(ctx, task, thread) for every task on up to `threads` threads (thread ids 0..threads-1). */
static inline void parallel_for_n(int tasks, int threads, task_fn fn, void *ctx) {
  job_t job = {fn, ctx, tasks, 0};
  worker_t w[64];
  pthread_t th[64];
  int started = 0;
  for (int i = 0; i < threads; i++) w[i] = (worker_t){&job, i};
  for (int i = 1; i < threads; i++) if (pthread_create(&th[started], NULL, worker, &w[started + 1]) == 0) started++;
  worker(&w[0]);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

static inline void parallel_for(int tasks, task_fn fn, void *ctx) {
  if (tasks <= 0) return;
  int nt = thread_count();
  parallel_for_n(tasks, nt < tasks ? nt : tasks, fn, ctx);
}

/* ---------------------------------------------------------------- argument helpers */

/* isa: the build the called function was bound to (its callback data). */
typedef struct { napi_env env; napi_value obj; const void *isa; int bad; char err[160]; } args_t;

/* The data of typed array `name` of type `want` with at least `min` elements (its length in *len if asked), else NULL and a->bad set. */
static inline void *get_sized(args_t *a, const char *name, napi_typedarray_type want, size_t min, size_t *len) {
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
  if (n < min) {
    a->bad = 1;
    snprintf(a->err, sizeof a->err, "native kernel: argument '%s' has %zu elements, needs %zu", name, n, min);
    return NULL;
  }
  if (len) *len = n;
  return data;
}
#define get_array(a, name, want) get_sized(a, name, want, 0, NULL)
#define F32(a, name) ((float *)get_array(a, name, napi_float32_array))
#define F64(a, name) ((double *)get_array(a, name, napi_float64_array))
#define I32(a, name) ((int32_t *)get_array(a, name, napi_int32_array))
#define SIZED(a, name, n) ((float *)get_sized(a, name, napi_float32_array, n, NULL))
#define SIZED32(a, name, n) ((int32_t *)get_sized(a, name, napi_int32_array, n, NULL))

static inline double get_num(args_t *a, const char *name) {
  napi_value v;
  double d = 0;
  if (a->bad) return 0;
  if (napi_get_named_property(a->env, a->obj, name, &v) != napi_ok || napi_get_value_double(a->env, v, &d) != napi_ok) {
    a->bad = 1;
    snprintf(a->err, sizeof a->err, "native kernel: argument '%s' missing or not a number", name);
  }
  return d;
}

static inline int has(args_t *a, const char *name) {
  napi_value v;
  napi_valuetype t;
  return napi_get_named_property(a->env, a->obj, name, &v) == napi_ok && napi_typeof(a->env, v, &t) == napi_ok && t == napi_object;
}

static inline int open_args(napi_env env, napi_callback_info info, args_t *a) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  a->env = env;
  a->bad = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok || argc < 1) {
    napi_throw_error(env, NULL, "native kernel: expected one argument object");
    return 0;
  }
  a->obj = argv[0];
  a->isa = data;
  return 1;
}

static inline napi_value finish(args_t *a) {
  if (a->bad) napi_throw_error(a->env, NULL, a->err);
  return NULL;
}

/*
 * The big kernels run on libuv's pool and return a promise, so the JS thread stays free (file reads
 * of the next batch, signals) while they compute. The argument object is referenced until the work
 * completes: its typed arrays must outlive it. ctx is heap-allocated and freed afterwards.
 */
typedef struct { napi_async_work work; napi_deferred deferred; napi_ref keep; void (*run)(void *), (*done)(void *); void *ctx; } async_job_t;

static inline void async_execute(napi_env env, void *data) {
  (void)env;
  async_job_t *j = data;
  j->run(j->ctx);
}

static inline void async_complete(napi_env env, napi_status status, void *data) {
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
  if (j->done) j->done(j->ctx);
  napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j->ctx);
  free(j);
}

/* run(ctx) off the JS thread; then done(ctx), if given, back on it (before ctx is freed). */
static inline napi_value run_async_then(args_t *a, const char *name, void (*run)(void *), void (*done)(void *), void *ctx) {
  napi_value promise, resource;
  async_job_t *j = calloc(1, sizeof *j);
  j->run = run;
  j->done = done;
  j->ctx = ctx;
  napi_create_promise(a->env, &j->deferred, &promise);
  napi_create_reference(a->env, a->obj, 1, &j->keep);
  napi_create_string_utf8(a->env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(a->env, NULL, resource, async_execute, async_complete, j, &j->work);
  napi_queue_async_work(a->env, j->work);
  return promise;
}

static inline napi_value run_async(args_t *a, const char *name, void (*run)(void *), void *ctx) { return run_async_then(a, name, run, NULL, ctx); }

static inline void *heap_copy(const void *p, size_t size) {
  void *q = malloc(size);
  memcpy(q, p, size);
  return q;
}

/* obj[name] = a function calling cb with `data` as its callback data. */
static inline void export_fn(napi_env env, napi_value obj, const char *name, napi_callback cb, void *data) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, data, &fn);
  napi_set_named_property(env, obj, name, fn);
}

/* forward.c: sets exports.clip (the CLIP blocks in C) where this CPU runs one of its builds. */
void forward_register(napi_env env, napi_value exports);
