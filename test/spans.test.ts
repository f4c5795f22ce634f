import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InferenceSession } from 'onnxruntime-node';
import { SpanSessions } from '../src/onnx/spans.js';

/** A fake session that records its span and whether it was released. */
function fakes() {
  const built: { span: string; released: boolean }[] = [];
  const build = async (a: number, b: number) => {
    const rec = { span: `${a}:${b}`, released: false };
    built.push(rec);
    return { release: async () => void (rec.released = true) } as unknown as InferenceSession;
  };
  return { built, build };
}

test('spans: one session for an uncut tower; cuts refine the partition and release the span they split', async () => {
  const { built, build } = fakes();
  const spans = new SpanSessions(12, build);
  assert.deepEqual(spans.plan(0, 12, []), [[0, 12]]);
  await spans.run(0, 12, async () => 0);
  assert.deepEqual(built.map((b) => b.span), ['0:12']);
  // A hook after block 8 cuts at 9: the whole-tower session goes, the halves are built when run.
  const plan = spans.plan(0, 12, [9]);
  assert.deepEqual(plan, [[0, 9], [9, 12]]);
  await new Promise((r) => setImmediate(r));
  assert.equal(built[0]!.released, true);
  for (const [a, b] of plan) await spans.run(a, b, async () => 0);
  // A later plain forward runs on the finer spans: nothing is rebuilt.
  assert.deepEqual(spans.plan(0, 12, []), [[0, 9], [9, 12]]);
  for (const [a, b] of spans.plan(0, 12, [])) await spans.run(a, b, async () => 0);
  assert.deepEqual(built.map((b) => b.span), ['0:12', '0:9', '9:12']);
  // runBlocks(3, 9) cuts at 3 too; only 0:9 is split.
  assert.deepEqual(spans.plan(3, 9, []), [[3, 9]]);
  assert.deepEqual(spans.plan(0, 12, []), [[0, 3], [3, 9], [9, 12]]);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(built.filter((b) => b.released).map((b) => b.span), ['0:12', '0:9']);
  await spans.release();
  assert.deepEqual(built.map((b) => [b.span, b.released]), [['0:12', true], ['0:9', true], ['9:12', true]]);
});

test('spans: a session in use is released only when its run ends; a failed build is retried; prepare builds the partition', async () => {
  const { built, build } = fakes();
  const spans = new SpanSessions(4, build);
  let finish!: () => void;
  const running = spans.run(0, 4, () => new Promise<void>((r) => (finish = r)));
  await new Promise((r) => setImmediate(r));
  spans.plan(0, 4, [2]);
  assert.equal(built[0]!.released, false, 'released while a run was using it');
  finish();
  await running;
  assert.equal(built[0]!.released, true);

  let fail = true;
  const flaky = new SpanSessions(2, async (a, b) => {
    if (fail) throw new Error('no memory');
    return build(a, b);
  });
  await assert.rejects(flaky.run(0, 2, async () => 0), /no memory/);
  fail = false;
  assert.equal(await flaky.run(0, 2, async () => 7), 7);
  await spans.prepare([0, 3]);
  assert.deepEqual(built.slice(1).map((b) => b.span), ['0:2', '0:2', '2:3', '3:4'], 'the flaky tower\'s span, then 0..2 | 2..3 | 3..4');
});
