/**
 * Micro-batcher: prompts from concurrent requests are queued and run together, one batch at a
 * time (the encoder's onnxruntime sessions already use every core, so batches never overlap).
 *
 * A batch starts when the oldest queued item has waited maxWaitMs, or as soon as maxBatch items of
 * its kind are queued; it takes up to maxBatch queued items of the oldest item's kind, in arrival
 * order. Exclusive tasks (edits, explorers) are one-item batches in the same queue, so nothing
 * else touches the models while they run.
 *
 * Admission counts work, not requests: the queue is bounded in items (prompts), and a request is
 * refused with QueueFullError when its items do not fit or when the estimated wait (items ahead
 * of it plus its own, times the measured time per item) would pass its deadline. Refusing at once
 * is what keeps goodput up under overload: an admitted request then finishes in time instead of
 * timing out half-computed, and the encoder never runs work whose client has given up.
 */
import { ItdError } from '../errors.js';

/** What a batch computes: one output per item, in order. */
export interface BatchKind<I, O> {
  readonly name: string;
  /** false: one item per run (exclusive tasks). */
  readonly batchable: boolean;
  run(items: I[]): Promise<O[]>;
}

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
  maxQueue: number;
  /** ms a batchable submit may expect to wait and run (default: unlimited); longer is refused at once. */
  budgetMs?: number;
  onBatch?(kind: string, size: number, ms: number): void;
}

/** Refused at admission: no room in the queue, or the wait would pass the deadline. `retryAfterS`: when the queue should have drained. */
export class QueueFullError extends Error {
  constructor(readonly depth: number, readonly retryAfterS: number, why = `the queue is full (${depth} items waiting)`) {
    super(why);
  }
}

/** The caller's deadline passed; `queued` when none of its items had started. */
export class DeadlineError extends Error {
  constructor(readonly queued: boolean) {
    super(queued ? 'timed out waiting in the queue' : 'timed out while computing');
  }
}

interface Ticket {
  results: unknown[];
  left: number;
  started: boolean;
  settled: boolean;
  resolve(v: unknown[]): void;
  reject(e: unknown): void;
}

interface Entry {
  kind: BatchKind<unknown, unknown>;
  item: unknown;
  ticket: Ticket;
  index: number;
  at: number;
}

const TASK: BatchKind<() => Promise<unknown>, unknown> = {
  name: 'task',
  batchable: false,
  run: async ([fn]) => [await fn!()],
};

export class Batcher {
  private queue: Entry[] = [];
  private busy = false;
  private timer: NodeJS.Timeout | undefined;
  /** Smoothed ms per item of batchable kinds (0 until the first batch ran). */
  private msPerItem = 0;
  /** Items in the batch now running, and when it started. */
  private running = 0;
  private runningSince = 0;

  constructor(private readonly opts: BatcherOptions) {
    for (const k of ['maxBatch', 'maxQueue'] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new ItdError('usage', `${k} must be a positive integer, got ${opts[k]}`, { field: k });
    }
    if (!(opts.maxWaitMs >= 0)) throw new ItdError('usage', `maxWaitMs must be >= 0, got ${opts.maxWaitMs}`, { field: 'maxWaitMs' });
  }

  /** Items waiting (not yet in a running batch). */
  get depth(): number {
    return this.queue.length;
  }

  get maxBatch(): number {
    return this.opts.maxBatch;
  }

  /** Estimated ms until `n` more items would be done (the rest of the running batch, the queue, then them), from the measured time per item. */
  estimatedWaitMs(n: number): number {
    const rest = Math.max(0, this.running * this.msPerItem - (performance.now() - this.runningSince));
    return rest + (this.queue.length + n) * this.msPerItem;
  }

  /** Why `n` more batchable items would be refused now, or undefined when they would be admitted. */
  refusal(n: number, budgetMs = this.opts.budgetMs ?? Infinity): QueueFullError | undefined {
    const depth = this.queue.length;
    const retryAfterS = Math.max(1, Math.ceil(this.estimatedWaitMs(0) / 1e3));
    if (depth + n > this.opts.maxQueue) return new QueueFullError(depth, retryAfterS);
    const wait = this.estimatedWaitMs(n);
    if (wait > budgetMs) return new QueueFullError(depth, retryAfterS, `the queue is too long: ${depth} items waiting, about ${Math.ceil(wait)} ms of work, past the ${budgetMs} ms deadline`);
    return undefined;
  }

  /**
   * Runs `items` through `kind` (possibly batched with other callers' items); rejects with
   * QueueFullError when refused (see refusal), DeadlineError when `signal` aborts first.
   */
  submit<I, O>(kind: BatchKind<I, O>, items: I[], signal?: AbortSignal): Promise<O[]> {
    if (items.length === 0) return Promise.resolve([]);
    if (signal?.aborted) return Promise.reject(new DeadlineError(true));
    const refused = this.refusal(items.length, kind.batchable ? undefined : Infinity);
    if (refused) return Promise.reject(refused);
    return new Promise<O[]>((resolve, reject) => {
      const onAbort = () => this.abort(ticket);
      const done = () => signal?.removeEventListener('abort', onAbort);
      const ticket: Ticket = {
        results: new Array(items.length), left: items.length, started: false, settled: false,
        resolve: (v) => (done(), resolve(v as O[])),
        reject: (e) => (done(), reject(e)),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const at = performance.now();
      items.forEach((item, index) => this.queue.push({ kind: kind as BatchKind<unknown, unknown>, item, ticket, index, at }));
      this.schedule();
    });
  }

  /** Runs fn alone, in queue order (no batch runs beside it). */
  async exclusive<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const [out] = await this.submit(TASK, [fn], signal);
    return out as T;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const head = this.queue[0];
    if (this.busy || !head) return;
    const waited = performance.now() - head.at;
    const full = !head.kind.batchable || this.queue.filter((e) => e.kind === head.kind).length >= this.opts.maxBatch;
    if (full || waited >= this.opts.maxWaitMs) void this.flush();
    else this.timer = setTimeout(() => this.schedule(), this.opts.maxWaitMs - waited);
  }

  private async flush(): Promise<void> {
    const kind = this.queue[0]!.kind;
    const limit = kind.batchable ? this.opts.maxBatch : 1;
    const batch: Entry[] = [];
    const rest: Entry[] = [];
    for (const e of this.queue) (e.kind === kind && batch.length < limit ? batch : rest).push(e);
    this.queue = rest;
    this.busy = true;
    this.running = batch.length;
    for (const e of batch) e.ticket.started = true;
    const t0 = (this.runningSince = performance.now());
    try {
      const out = await kind.run(batch.map((e) => e.item));
      if (out.length !== batch.length) throw new ItdError('internal', `batch '${kind.name}' returned ${out.length} results for ${batch.length} items`);
      batch.forEach((e, i) => this.deliver(e, out[i]));
    } catch (err) {
      for (const e of batch) this.fail(e.ticket, err);
    } finally {
      const ms = performance.now() - t0;
      // Half-life of about two batches: follows load changes on a shared machine within a second or so.
      if (kind.batchable) this.msPerItem = this.msPerItem === 0 ? ms / batch.length : 0.7 * this.msPerItem + 0.3 * (ms / batch.length);
      this.opts.onBatch?.(kind.name, batch.length, ms);
      this.busy = false;
      this.running = 0;
      this.schedule();
    }
  }

  private deliver(e: Entry, out: unknown): void {
    const t = e.ticket;
    if (t.settled) return;
    t.results[e.index] = out;
    if (--t.left === 0) {
      t.settled = true;
      t.resolve(t.results);
    }
  }

  private fail(t: Ticket, err: unknown): void {
    if (t.settled) return;
    t.settled = true;
    this.queue = this.queue.filter((e) => e.ticket !== t);
    t.reject(err);
  }

  private abort(t: Ticket): void {
    this.fail(t, new DeadlineError(!t.started));
    this.schedule();
  }
}
