/**
 * Synchronous encoding through Hugging Face's Rust `tokenizers` binding, whose encode methods are
 * async only: a worker thread owns a second Tokenizer built from the same tokenizer.json, and the
 * caller blocks on an Atomics.wait until the worker has posted the ids on a MessagePort, which is
 * then read with receiveMessageOnPort (the pattern `synckit` uses). itd's prompt tokenizers are
 * synchronous everywhere (framing happens inside synchronous batch code), so this keeps the exact
 * fast-tokenizer ids without making every caller async.
 */
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { ItdError } from '../errors.js';

/** Runs as CommonJS in the worker: encode batches (no special tokens) and reply on the port. */
const WORKER = `
const { workerData } = require('node:worker_threads');
const { Tokenizer } = require(workerData.module);
const tok = Tokenizer.fromString(workerData.json);
const { port, signal } = workerData;
port.on('message', async (texts) => {
  let reply;
  try {
    reply = { ids: (await tok.encodeBatch(texts, { addSpecialTokens: false })).map((e) => e.getIds()) };
  } catch (e) {
    reply = { error: String((e && e.message) || e) };
  }
  port.postMessage(reply);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
});
`;

/** Generous bound on one batch; a stuck worker becomes an error instead of a hang. */
const TIMEOUT_MS = 120_000;

export class SyncEncoder {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));

  /** tokenizerJson: the file's text; source names it in errors. */
  constructor(tokenizerJson: string, private readonly source: string) {
    const { port1, port2 } = new MessageChannel();
    const module = createRequire(import.meta.url).resolve('tokenizers');
    this.worker = new Worker(WORKER, { eval: true, workerData: { module, json: tokenizerJson, port: port2, signal: this.signal }, transferList: [port2] });
    this.worker.unref(); // never keeps the process alive
    this.port = port1;
    this.port.unref();
  }

  /** Ids of each text's pieces (the tokenizer.json pipeline without post-processing). */
  encodeBatch(texts: readonly string[]): number[][] {
    if (texts.length === 0) return [];
    Atomics.store(this.signal, 0, 0);
    this.port.postMessage(texts);
    if (Atomics.wait(this.signal, 0, 0, TIMEOUT_MS) === 'timed-out') {
      throw new ItdError('internal', `${this.source}: tokenizer worker did not answer within ${TIMEOUT_MS / 1000} s`, { file: this.source });
    }
    const msg = receiveMessageOnPort(this.port)?.message as { ids?: number[][]; error?: string } | undefined;
    if (!msg?.ids) throw new ItdError('format', `${this.source}: tokenizers could not encode the batch: ${msg?.error ?? 'no reply'}`, { file: this.source });
    return msg.ids;
  }

  async close(): Promise<void> {
    this.port.close();
    await this.worker.terminate();
  }
}
