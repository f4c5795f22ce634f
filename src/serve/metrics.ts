/** A minimal Prometheus registry (text exposition format 0.0.4) and the server's metrics. */

type Labels = Record<string, string>;

interface Metric {
  text(): string;
}

function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function head(name: string, help: string, type: string): string {
  return `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`;
}

function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

export class Counter implements Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, private readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const cur = this.values.get(key) ?? { labels, value: 0 };
    cur.value += by;
    this.values.set(key, cur);
  }

  total(): number {
    let s = 0;
    for (const v of this.values.values()) s += v.value;
    return s;
  }

  text(): string {
    const rows = [...this.values.entries()].map(([key, v]) => `${this.name}${key} ${num(v.value)}\n`);
    return head(this.name, this.help, 'counter') + rows.join('');
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, private readonly help: string, private readonly buckets: readonly number[]) {}

  observe(value: number, labels: Labels = {}): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i]!++;
    });
    s.sum += value;
    s.count++;
  }

  text(): string {
    let out = head(this.name, this.help, 'histogram');
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => (out += `${this.name}_bucket${labelText({ ...s.labels, le: num(b) })} ${s.counts[i]}\n`));
      out += `${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}\n`;
      out += `${this.name}_sum${labelText(s.labels)} ${num(s.sum)}\n${this.name}_count${labelText(s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

/** A gauge read at scrape time. */
export class Gauge implements Metric {
  constructor(readonly name: string, private readonly help: string, private readonly read: () => number) {}

  text(): string {
    return `${head(this.name, this.help, 'gauge')}${this.name} ${num(this.read())}\n`;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }

  text(): string {
    return this.metrics.map((m) => m.text()).join('');
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = this.registry.add(new Counter('itd_http_requests_total', 'HTTP requests by route, method and status code'));
  readonly latency = this.registry.add(new Histogram('itd_http_request_duration_seconds', 'HTTP request latency by route',
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]));
  readonly batchSize = this.registry.add(new Histogram('itd_batch_size', 'items per model batch, by kind', [1, 2, 4, 8, 16, 32, 64, 128]));
  readonly batchSeconds = this.registry.add(new Histogram('itd_batch_duration_seconds', 'model batch run time, by kind',
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]));
  readonly gatePrompts = this.registry.add(new Counter('itd_gate_prompts_total', 'prompts through the gate, by route'));
  readonly gateErased = this.registry.add(new Counter('itd_gate_erased_total', 'prompts the gate erased (or flagged), by route'));
  readonly cacheLookups = this.registry.add(new Counter('itd_encode_cache_lookups_total', 'encode cache lookups per prompt, by result (hit, miss)'));

  constructor(queueDepth: () => number, cacheBytes: () => number = () => 0) {
    this.registry.add(new Gauge('itd_queue_depth', 'items waiting for a batch', queueDepth));
    this.registry.add(new Gauge('itd_encode_cache_bytes', 'bytes held by the encode cache', cacheBytes));
    this.registry.add(new Gauge('itd_gate_hit_rate', 'erased / total prompts through the gate since start',
      () => this.gateErased.total() / Math.max(1, this.gatePrompts.total())));
    this.registry.add(new Gauge('process_resident_memory_bytes', 'resident set size of the server process', () => process.memoryUsage.rss()));
  }

  gate(route: string, erased: ArrayLike<number | boolean>): void {
    let k = 0;
    for (let i = 0; i < erased.length; i++) if (erased[i]) k++;
    this.gatePrompts.inc({ route }, erased.length);
    this.gateErased.inc({ route }, k);
  }
}
