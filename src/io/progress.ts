// Minimal stderr progress bar: redraws in place on a TTY, throttled log lines otherwise (CI, pipes).

export interface ProgressOptions {
  label: string;
  total?: number;
  /** What is counted, for the rate (default "it"). */
  unit?: string;
  stream?: NodeJS.WriteStream;
}

const TTY_INTERVAL_MS = 100;
const LOG_INTERVAL_MS = 5000;

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export class Progress {
  private readonly label: string;
  private readonly total: number | undefined;
  private readonly unit: string;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly quiet = process.env.ITD_QUIET === '1';
  private readonly start = Date.now();
  private lastDraw: number;
  private count = 0;
  private finished = false;

  constructor(opts: ProgressOptions) {
    this.label = opts.label;
    this.total = opts.total;
    this.unit = opts.unit ?? 'it';
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    // Logs wait a full interval before the first line so short jobs only print their final line.
    this.lastDraw = this.tty ? 0 : this.start;
  }

  tick(n = 1): void {
    this.set(this.count + n);
  }

  set(done: number): void {
    this.count = done;
    const now = Date.now();
    if (now - this.lastDraw >= (this.tty ? TTY_INTERVAL_MS : LOG_INTERVAL_MS)) this.draw(now);
  }

  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.draw(Date.now());
    if (this.tty && !this.quiet) this.stream.write('\n');
  }

  /** e.g. "encode 120/1000 12.0% 35.2 prompts/s ETA 0:25". */
  line(now = Date.now()): string {
    const secs = (now - this.start) / 1000;
    const rate = secs > 0 ? this.count / secs : 0;
    const parts = [this.label];
    if (this.total !== undefined && this.total > 0) {
      parts.push(`${this.count}/${this.total}`, `${((100 * this.count) / this.total).toFixed(1)}%`);
    } else {
      parts.push(String(this.count));
    }
    parts.push(`${rate.toFixed(1)} ${this.unit}/s`);
    if (this.finished) parts.push(`in ${formatDuration(secs)}`);
    else if (this.total !== undefined && rate > 0) parts.push(`ETA ${formatDuration((this.total - this.count) / rate)}`);
    return parts.join(' ');
  }

  private draw(now: number): void {
    this.lastDraw = now;
    if (this.quiet) return;
    // \x1b[K clears what is left of a longer previous line.
    this.stream.write(this.tty ? `\r${this.line(now)}\x1b[K` : `${this.line(now)}\n`);
  }
}

/** What library code ticks: it never draws itself; the CLI hands in a factory of real bars. */
export interface ProgressSink {
  tick(n?: number): void;
  done(): void;
}

export type ProgressFactory = (opts: Pick<ProgressOptions, 'label' | 'total' | 'unit'>) => ProgressSink;

/** The CLI's factory: a stderr bar per stage. */
export const stderrProgress: ProgressFactory = (opts) => new Progress(opts);
