/**
 * Property-based tests (fast-check) of the HTTP API's request bodies: any JSON value, any bytes and
 * any content type sent to the POST routes get a 2xx or a 4xx {error: {code, message}}, never a 5xx,
 * and the server keeps answering. Requests go through fastify's inject (no sockets), bounded runs.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { loadTextModel } from '../src/encoder/index.js';
import { saveEraser } from '../src/select/eraser-file.js';
import { buildEraser } from '../src/select/select.js';
import { createServer, type Server } from '../src/serve/index.js';
import { exemplarSae, tinyModel, tmpDir } from './helpers.js';

const RUNS = { numRuns: Number(process.env['ITD_FUZZ_RUNS']) || 60 };
const ROUTES = ['/v1/encode', '/v1/classify', '/v1/concepts', '/v1/calibrate'];

let server: Promise<Server> | undefined;
function start(): Promise<Server> {
  return (server ??= (async () => {
    const model = await loadTextModel(tinyModel());
    const prompts = ['a photo of a zebra', 'a zebra in a field', 'a photo of a dog', 'a field of flowers'];
    const sae = await exemplarSae(model, prompts, 8, 4);
    const spec = await buildEraser(model, sae, { targets: [{ name: 'zebra', prompts: prompts.slice(0, 2) }], retain: prompts.slice(2), kSel: 4, scale: -8, mode: 'official', layer: 8, saeId: 'fuzz' });
    const eraserPath = path.join(tmpDir(), 'eraser.json');
    saveEraser(eraserPath, { ...spec, threshold: 0.5 });
    const s = await createServer({ model, sae, eraserPath, web: false, bodyLimit: 16 * 1024 });
    await s.ready;
    return s;
  })());
}
after(async () => {
  if (server) await (await server).app.close();
});

async function post(url: string, payload: string | Buffer, type: string): Promise<{ status: number; body: string }> {
  const s = await start();
  const r = await s.app.inject({ method: 'POST', url, payload, headers: { 'content-type': type } });
  return { status: r.statusCode, body: r.body };
}

function assertNo5xx(r: { status: number; body: string }, what: string): void {
  assert.ok(r.status < 500, `${what}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
  if (r.status >= 400) {
    const e = JSON.parse(r.body) as { error?: { code?: unknown; message?: unknown } };
    assert.equal(typeof e.error?.code, 'string', r.body);
    assert.equal(typeof e.error?.message, 'string', r.body);
  }
}

const promptArb = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('a photo of a zebra', '', ' ', '\u0000'));
const bodyArb = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record({
    prompts: fc.oneof(fc.array(promptArb, { maxLength: 5 }), fc.jsonValue({ maxDepth: 2 })),
    policy: fc.oneof(fc.constantFrom('gate', 'always', 'never'), fc.jsonValue({ maxDepth: 1 })),
    top: fc.oneof(fc.integer({ min: -2, max: 70 }), fc.jsonValue({ maxDepth: 1 })),
    name: promptArb,
    recall: fc.oneof(fc.double(), fc.jsonValue({ maxDepth: 1 })),
  }, { requiredKeys: [] }),
);

test('POST bodies: any JSON value gets a 2xx or a 4xx error object, never a 5xx', async () => {
  await fc.assert(fc.asyncProperty(fc.constantFrom(...ROUTES.filter((r) => r !== '/v1/concepts')), bodyArb, async (url, body) => {
    assertNo5xx(await post(url, JSON.stringify(body) ?? 'null', 'application/json'), `${url} ${JSON.stringify(body)}`);
  }), RUNS);
});

test('POST bodies: arbitrary bytes and content types get a 4xx, never a 5xx', async () => {
  const type = fc.oneof(fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream', 'application/x-safetensors', ''), fc.string({ maxLength: 20 }));
  await fc.assert(fc.asyncProperty(fc.constantFrom(...ROUTES), fc.uint8Array({ maxLength: 200 }), type, async (url, bytes, t) => {
    assertNo5xx(await post(url, Buffer.from(bytes), t || 'application/json'), `${url} [${t}] ${Buffer.from(bytes).toString('hex').slice(0, 80)}`);
  }), RUNS);
  // Still serving after all that.
  const ok = await post('/v1/classify', JSON.stringify({ prompts: ['a photo of a zebra'] }), 'application/json');
  assert.equal(ok.status, 200, ok.body);
});
