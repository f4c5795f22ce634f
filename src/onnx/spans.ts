/**
 * Sessions over spans of a tower's blocks. The spans always partition 0..L: a plain forward runs
 * one session for the whole tower, and a hook (read or replace the residual stream after block
 * k, a requested hidden state, a run that starts or stops mid-tower) cuts the partition at k+1.
 * Cuts are only ever added, so each block's weights are held by exactly one session, a cut span's
 * session is released (once no run is using it) and its two halves are built on first use; later
 * forwards of any kind run on the finer spans (one extra boundary per cut, not a rebuild).
 */
import type { InferenceSession } from 'onnxruntime-node';

interface Span {
  session: Promise<InferenceSession>;
  active: number;
  retired: boolean;
}

export class SpanSessions {
  private readonly cuts: Set<number>;
  private readonly spans = new Map<string, Span>();

  /** `build(from, to)`: a session running blocks from..to-1. */
  constructor(private readonly numLayers: number, private readonly build: (from: number, to: number) => Promise<InferenceSession>) {
    this.cuts = new Set([0, numLayers]);
  }

  /** The spans [a, b) that tile from..to, after cutting at from, to and every index in `at` (0..L). */
  plan(from: number, to: number, at: readonly number[]): [number, number][] {
    for (const c of [from, to, ...at]) this.cut(c);
    const edges = [...this.cuts].filter((c) => c >= from && c <= to).sort((x, y) => x - y);
    return edges.slice(1).map((b, i) => [edges[i]!, b]);
  }

  /** Cuts at `at` and builds every span of the whole tower now (onnxruntime builds a session on the calling thread). */
  async prepare(at: readonly number[]): Promise<void> {
    for (const [a, b] of this.plan(0, this.numLayers, at)) await this.span(a, b).session;
  }

  /** Runs fn on span [a, b)'s session (a span of the current partition, from plan). */
  async run<T>(a: number, b: number, fn: (s: InferenceSession) => Promise<T>): Promise<T> {
    const span = this.span(a, b);
    span.active++;
    try {
      return await fn(await span.session);
    } finally {
      span.active--;
      if (span.retired && span.active === 0) await release(span);
    }
  }

  private span(a: number, b: number): Span {
    const key = `${a}:${b}`;
    const known = this.spans.get(key);
    if (known) return known;
    const built: Span = { session: this.build(a, b), active: 0, retired: false };
    // A failed build is not cached: the next run tries again (and reports its own error).
    built.session.catch(() => this.spans.get(key) === built && this.spans.delete(key));
    this.spans.set(key, built);
    return built;
  }

  async release(): Promise<void> {
    const all = [...this.spans.values()];
    this.spans.clear();
    await Promise.all(all.map(release));
  }

  private cut(c: number): void {
    if (this.cuts.has(c) || c <= 0 || c >= this.numLayers) return;
    const edges = [...this.cuts].sort((x, y) => x - y);
    const a = edges.filter((e) => e < c).pop()!;
    const b = edges.find((e) => e > c)!;
    this.cuts.add(c);
    const key = `${a}:${b}`;
    const span = this.spans.get(key);
    if (!span) return;
    this.spans.delete(key);
    span.retired = true;
    if (span.active === 0) void release(span);
  }
}

/** Releases a span's session; one whose build failed has nothing to release. */
function release(span: Span): Promise<void> {
  return span.session.then((s) => s.release(), () => undefined);
}
