import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { calibrateThreshold } from '../src/classify/calibrate.js';
import { loadTextConditioning, loadTextModel, type TextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import { ItdError } from '../src/errors.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { saeIdentity, saveSae, type Sae } from '../src/sae/index.js';
import { conceptNameProblem, loadEraser, saveEraser, validateEraser, type EraserSpec } from '../src/select/eraser-file.js';
import { addConcept, buildEraser } from '../src/select/select.js';
import { bearerToken, hostName, isLoopback, parseToken, tokenMatches } from '../src/serve/auth.js';
import { Batcher, DeadlineError, QueueFullError, type BatchKind } from '../src/serve/batcher.js';
import { serveCommand } from '../src/cli/serve-run.js';
import { createServer, type ImagePipeline, type Server, type ServeOptions } from '../src/serve/index.js';
import { EncodeCache } from '../src/serve/encode-cache.js';
import { encodeSafetensors } from '../src/serve/safetensors-body.js';
import { exemplarSae, maxAbsDiff, REPO_ROOT, tinyModel, tmpDir } from './helpers.js';

const LAYER = 8;
const TARGETS = [
  { name: 'zebra', prompts: ['a photo of a zebra', 'a zebra in a field', 'a painting of a zebra at dusk'] },
  { name: 'lighthouse', prompts: ['a lighthouse on a cliff', 'an old lighthouse at night', 'a photo of a lighthouse'] },
];
const RETAIN = ['a photo of a dog', 'a field of flowers', 'a painting of a city at dusk', 'a cliff by the sea', 'a house at night', 'a photo of a car'];
const OTHERS = ['a bowl of fruit on a table', 'a man riding a bicycle', 'a volcano erupting', 'a volcano at night'];
const TOKEN = 'correct-horse-battery-staple';

let fixture: Promise<{ model: TextModel; sae: Sae; spec: EraserSpec }> | undefined;

/** Tiny model, exemplar SAE and a calibrated two-concept eraser, built once. */
function setup() {
  return (fixture ??= (async () => {
    const model = await loadTextModel(tinyModel());
    const sae = await exemplarSae(model, [...TARGETS.flatMap((t) => t.prompts), ...RETAIN, ...OTHERS], LAYER, 8);
    const spec = await buildEraser(model, sae, { targets: TARGETS, retain: RETAIN, kSel: 8, scale: -8, mode: 'official', layer: LAYER, saeId: 'test-sae' });
    const eraser = await ConceptEraser.load({ model, sae, eraser: spec });
    const scores = async (p: string[]) => (await eraser.classify(p)).map((d) => d.score);
    const c = calibrateThreshold(await scores(TARGETS.flatMap((t) => t.prompts)), await scores(RETAIN), { recall: 1 });
    await eraser.release();
    return { model, sae, spec: { ...spec, threshold: c.threshold } };
  })());
}

interface Running extends Server {
  url: string;
  eraserPath: string;
}

const running = new Set<Running>();

async function start(over: Partial<ServeOptions> = {}, edit: (spec: EraserSpec) => EraserSpec = (s) => s): Promise<Running> {
  const { model, sae, spec } = await setup();
  const eraserPath = path.join(tmpDir(), 'eraser.json');
  saveEraser(eraserPath, edit(spec));
  const s = await createServer({ model, sae, eraserPath, web: false, ...over });
  await s.ready;
  const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
  const r = { ...s, url, eraserPath };
  running.add(r);
  return r;
}

async function stop(s: Running): Promise<void> {
  running.delete(s);
  await s.close();
}

test.after(async () => {
  for (const s of running) await s.close();
});

type Json = Record<string, any>; // response bodies, checked field by field

async function call(s: Running, method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Json; headers: Headers }> {
  const init: RequestInit = { method, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } };
  if (body !== undefined) init.body = typeof body === 'string' ? body : body instanceof Uint8Array ? new Uint8Array(body) : JSON.stringify(body);
  const res = await fetch(s.url + url, init);
  const text = await res.text();
  return { status: res.status, json: text.startsWith('{') ? JSON.parse(text) : { text }, headers: res.headers };
}

const f32 = (b64: string) => new Float32Array(new Uint8Array(Buffer.from(b64, 'base64')).buffer);

function metric(text: string, line: string): number {
  const row = text.split('\n').find((l) => l.startsWith(`${line} `));
  return row ? Number(row.slice(line.length + 1)) : NaN;
}

/** Waits until the server has `n` prompts queued (timing-free setup for queue tests). */
async function untilQueued(s: Running, n: number): Promise<void> {
  while (!(metric(await (await fetch(`${s.url}/metrics`)).text(), 'itd_queue_depth') >= n)) await new Promise((r) => setTimeout(r, 10));
}

function assertError(r: { status: number; json: Json }, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json['error']?.code, code, JSON.stringify(r.json));
  assert.equal(typeof r.json['error'].message, 'string');
}

test('every route answers: health, readiness, info, OpenAPI, concepts, classify with tokens, features, metrics', async () => {
  const s = await start();
  assert.deepEqual((await call(s, 'GET', '/healthz')).json, { status: 'ok' });
  assert.equal((await call(s, 'GET', '/readyz')).json['status'], 'ready');
  const info = (await call(s, 'GET', '/v1/info')).json;
  assert.equal(info['layer'], LAYER);
  assert.equal(info['explain'], false);
  assert.equal(info['generate'], false);

  const doc = (await call(s, 'GET', '/openapi.json')).json;
  assert.equal(doc['openapi'], '3.1.0');
  // The file formats are components from their one schema; GET /v1/concepts refers to the eraser's Calibration.
  assert.deepEqual(doc['components']['schemas']['Eraser']['properties']['format']['anyOf'].map((f: { const: string }) => f.const), ['itd-eraser/1', 'itd-eraser/2']);
  assert.deepEqual(Object.keys(doc['components']['schemas']).sort(), ['ActivationManifest', 'Calibration', 'Eraser', 'EraserSet', 'SaeConfig', 'TrainConfig']);
  const overview = doc['paths']['/v1/concepts'].get.responses['200'].content['application/json'].schema;
  assert.deepEqual(overview.properties.calibration.anyOf[0], { $ref: '#/components/schemas/Calibration' });
  assert.equal(overview.properties.mode.anyOf.length, 2);
  for (const p of ['/v1/encode', '/v1/classify', '/v1/generate', '/v1/concepts', '/v1/concepts/{name}', '/v1/calibrate', '/v1/features', '/v1/explain', '/healthz', '/readyz', '/metrics', '/openapi.json']) {
    assert.ok(doc['paths'][p], `openapi lacks ${p}`);
  }
  assert.ok(doc['paths']['/v1/encode'].post.requestBody.content['application/json'].schema.properties.prompts);
  assert.equal(doc['paths']['/v1/concepts/{name}'].delete.parameters[0].in, 'path');

  const concepts = (await call(s, 'GET', '/v1/concepts')).json;
  assert.deepEqual(concepts['concepts'].map((c: Json) => c['name']), ['zebra', 'lighthouse']);

  const cl = await call(s, 'POST', '/v1/classify', { prompts: ['a photo of a zebra'] });
  assert.equal(cl.status, 200);
  const r = cl.json['results'][0];
  assert.equal(r.erased, true);
  assert.deepEqual(r.concepts, ['zebra']);
  assert.ok(r.features.length > 0 && r.features.length <= 8);
  // Token shares: sum to 1, and the tokens' mean score is the prompt's gate score.
  const shares = r.tokens.map((t: Json) => t['share']);
  assert.ok(Math.abs(shares.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-6);
  const mean = r.tokens.reduce((a: number, t: Json) => a + t['score'], 0) / r.tokens.length;
  assert.ok(Math.abs(mean - r.score) <= 1e-4 * r.score, `${mean} vs ${r.score}`);
  assert.match(r.tokens.map((t: Json) => t['token']).join(''), /zebra/);
  assert.ok(r.tokens.some((t: Json) => t['latents'].some((l: Json) => l['concepts'].includes('zebra'))));
  const two = (await call(s, 'POST', '/v1/classify', { prompts: ['a photo of a zebra', 'a photo of a dog'], top: 0 })).json;
  assert.deepEqual(two['results'].map((x: Json) => [x['erased'], 'tokens' in x, 'features' in x]), [[true, false, false], [false, false, false]]);

  const feats = (await call(s, 'GET', '/v1/features?prompt=a%20zebra&top=3')).json;
  assert.equal(feats['tokens'].at(-1).token, '<|endoftext|>');
  assert.ok(feats['tokens'].every((t: Json) => t['latents'].length <= 3));

  assertError(await call(s, 'GET', '/v1/explain?latent=3'), 404, 'no_activations');
  assertError(await call(s, 'POST', '/v1/generate', { prompts: ['a zebra'] }), 501, 'no_pipeline');

  const metrics = await fetch(`${s.url}/metrics`);
  assert.match(metrics.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  const text = await metrics.text();
  for (const name of ['itd_http_requests_total', 'itd_http_request_duration_seconds_bucket', 'itd_batch_size_bucket', 'itd_queue_depth', 'itd_gate_hit_rate', 'process_resident_memory_bytes']) {
    assert.match(text, new RegExp(`^${name}`, 'm'), name);
  }
  assert.equal(metric(text, 'itd_http_requests_total{route="/v1/classify",method="POST",status="200"}'), 2);
  assert.equal(metric(text, 'itd_gate_hit_rate'), 2 / 3); // 2 of the 3 classified prompts erased
  await stop(s);
});

test('/v1/encode: JSON (base64 LE float32) and safetensors bodies agree with ConceptEraser.encode', async () => {
  const s = await start();
  const { model, sae } = await setup();
  const prompts = ['a photo of a zebra', 'a bowl of fruit on a table'];
  const json = await call(s, 'POST', '/v1/encode', { prompts });
  assert.equal(json.status, 200);
  const res = await fetch(`${s.url}/v1/encode`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/octet-stream' }, body: JSON.stringify({ prompts }) });
  assert.equal(res.headers.get('content-type'), 'application/octet-stream');
  const file = path.join(tmpDir(), 'body.safetensors');
  fs.writeFileSync(file, new Uint8Array(await res.arrayBuffer()));
  const st = SafetensorsFile.open(file);
  const D = model.config.hiddenSize;
  assert.deepEqual(st.names().sort(), ['erased', 'last_hidden_state', 'pooler_output', 'score']);
  assert.deepEqual(st.info('last_hidden_state').shape, [2, 77, D]);
  assert.deepEqual([...st.readI32('erased')], [1, 0]);
  assert.deepEqual(JSON.parse(st.metadata['concepts']!), [['zebra'], []]);
  const last = st.readF32('last_hidden_state');
  const pooler = st.readF32('pooler_output');
  const score = st.readF32('score');
  st.close();

  const direct = await ConceptEraser.load({ model, sae, eraser: loadEraser(s.eraserPath) });
  const ref = await direct.encode(prompts);
  await direct.release();
  json.json['results'].forEach((r: Json, i: number) => {
    assert.deepEqual(f32(r['last_hidden_state']), last.subarray(i * 77 * D, (i + 1) * 77 * D));
    assert.deepEqual(f32(r['pooler_output']), pooler.subarray(i * D, (i + 1) * D));
    assert.equal(r['score'], score[i]);
    assert.equal(r['erased'], i === 0);
  });
  assert.deepEqual(last, ref.lastHiddenState);
  assert.deepEqual(json.json['shape'], { last_hidden_state: [77, D], pooler_output: [D] });
  // policy never: nothing erased, conditioning of the zebra prompt differs from the erased one.
  const never = (await call(s, 'POST', '/v1/encode', { prompts: prompts.slice(0, 1), policy: 'never' })).json['results'][0];
  assert.equal(never.erased, false);
  assert.ok(maxAbsDiff(f32(never.last_hidden_state), last.subarray(0, 77 * D)) > 1e-3);
  await stop(s);
});

test('micro-batching: concurrent requests share encoder calls and get the results of individual calls', async () => {
  const s = await start({ maxWaitMs: 300, maxBatch: 16, cacheMiB: 0 }); // uncached: the 'alone' calls must compute
  const prompts = [...TARGETS.flatMap((t) => t.prompts), ...OTHERS, OTHERS[0]!]; // a repeat is computed once, answered twice
  const before = await (await fetch(`${s.url}/metrics`)).text();
  assert.ok(Number.isNaN(metric(before, 'itd_batch_size_count{kind="encode-gate"}')));
  const together = await Promise.all(prompts.map((p) => call(s, 'POST', '/v1/encode', { prompts: [p] })));
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const batches = metric(text, 'itd_batch_size_count{kind="encode-gate"}');
  assert.equal(metric(text, 'itd_batch_size_sum{kind="encode-gate"}'), prompts.length);
  assert.ok(batches < prompts.length / 2, `${prompts.length} requests ran in ${batches} batches`);
  for (const [i, p] of prompts.entries()) {
    const alone = (await call(s, 'POST', '/v1/encode', { prompts: [p] })).json['results'][0];
    const got = together[i]!.json['results'][0];
    assert.equal(got.prompt, p);
    assert.equal(got.erased, alone.erased);
    assert.ok(maxAbsDiff(f32(got.last_hidden_state), f32(alone.last_hidden_state)) <= 1e-5);
  }
  await stop(s);
});

test('a full queue answers 429 with Retry-After; a queued request past its deadline gets 503', async () => {
  const s = await start({ maxQueue: 4, maxPrompts: 4, maxWaitMs: 1000 });
  const first = call(s, 'POST', '/v1/encode', { prompts: ['a', 'b', 'c', 'd'] }); // waits 1 s for more
  await untilQueued(s, 4);
  const full = await call(s, 'POST', '/v1/encode', { prompts: ['e'] });
  assertError(full, 429, 'queue_full');
  assert.equal(full.headers.get('retry-after'), '1');
  assert.equal((await first).status, 200);
  await stop(s);

  const slow = await start({ timeoutMs: 50, maxWaitMs: 1000 });
  const late = await call(slow, 'POST', '/v1/encode', { prompts: ['a zebra'] });
  assertError(late, 503, 'timeout');
  assert.equal(late.headers.get('retry-after'), '1');
  await stop(slow);
});

test('a client that disconnects while queued has its prompts dropped before they run', async () => {
  const s = await start({ maxWaitMs: 600 });
  const ac = new AbortController();
  const gone = fetch(`${s.url}/v1/encode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompts: ['a zebra'] }), signal: ac.signal });
  await untilQueued(s, 1);
  ac.abort();
  await assert.rejects(gone);
  await new Promise((r) => setTimeout(r, 700));
  const text = await (await fetch(`${s.url}/metrics`)).text();
  assert.ok(Number.isNaN(metric(text, 'itd_batch_size_count{kind="encode-gate"}')), 'the dropped prompt still ran');
  assert.equal(metric(text, 'itd_queue_depth'), 0);
  await stop(s);
});

test('/healthz answers while a large encode is in flight', async () => {
  const s = await start({ maxBatch: 64 });
  let done = false;
  const big = call(s, 'POST', '/v1/encode', { prompts: Array.from({ length: 64 }, (_, i) => `a long prompt number ${i} about a zebra in a field of flowers at dusk`) }).then((r) => ((done = true), r));
  await new Promise((r) => setTimeout(r, 20));
  const t0 = performance.now();
  assert.equal((await call(s, 'GET', '/healthz')).status, 200);
  const ms = performance.now() - t0;
  assert.equal(done, false, 'the encode finished before /healthz could be checked');
  assert.ok(ms < 500, `/healthz took ${ms.toFixed(0)} ms during an encode`);
  assert.equal((await big).status, 200);
  await stop(s);
});

test('bearer auth: required when a token is set, constant-time check, public health routes; requireAuth needs a token', async () => {
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  assert.equal(tokenMatches(`${TOKEN}x`, TOKEN), false);
  assert.equal(tokenMatches('', TOKEN), false);
  assert.equal(bearerToken(`Bearer ${TOKEN}`), TOKEN);
  assert.equal(bearerToken(`Basic ${TOKEN}`), undefined);
  assert.equal(isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('localhost'), true);
  assert.equal(isLoopback('0.0.0.0') || isLoopback('192.168.1.4') || isLoopback('::') || isLoopback('example.com'), false);
  assert.throws(() => parseToken('short\n', 'tok.txt'), /at least 16 characters/);
  assert.equal(parseToken(`${TOKEN}\n`, 'tok.txt'), TOKEN);

  const { model, sae } = await setup();
  await assert.rejects(createServer({ model, sae, eraserPath: 'unused.json', requireAuth: true }), /token is required/);
  await assert.rejects(serveCommand.run({ model: 'm', sae: 's', eraser: 'e', host: '0.0.0.0', port: '0' }, []), /requires --token-file/);

  const s = await start({ token: TOKEN, requireAuth: true });
  const missing = await call(s, 'GET', '/v1/concepts');
  assertError(missing, 401, 'unauthorized');
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assertError(await call(s, 'GET', '/v1/concepts', undefined, { authorization: 'Bearer wrong-token-wrong-token' }), 401, 'unauthorized');
  assertError(await call(s, 'GET', '/metrics'), 401, 'unauthorized');
  assertError(await call(s, 'GET', '/no/such/route'), 401, 'unauthorized'); // no route probing without the token
  assert.equal((await call(s, 'GET', '/v1/concepts', undefined, { authorization: `Bearer ${TOKEN}` })).status, 200);
  assert.equal((await call(s, 'GET', '/healthz')).status, 200);
  assert.equal((await call(s, 'GET', '/readyz')).status, 200);
  // Unauthenticated bodies are refused before parsing.
  assertError(await call(s, 'POST', '/v1/encode', '{not json'), 401, 'unauthorized');
  await stop(s);
});

test('CORS is off by default and allows exactly the configured origin', async () => {
  const off = await start();
  const r = await fetch(`${off.url}/v1/concepts`, { headers: { origin: 'https://evil.example' } });
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  assert.equal((await fetch(`${off.url}/v1/concepts`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } })).status, 404);
  await stop(off);
  const on = await start({ cors: 'https://app.example' });
  assert.equal((await fetch(`${on.url}/v1/concepts`, { headers: { origin: 'https://app.example' } })).headers.get('access-control-allow-origin'), 'https://app.example');
  assert.equal((await fetch(`${on.url}/v1/concepts`, { headers: { origin: 'https://evil.example' } })).headers.get('access-control-allow-origin'), null);
  const pre = await fetch(`${on.url}/v1/encode`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
  assert.equal(pre.status, 204);
  assert.match(pre.headers.get('access-control-allow-headers')!, /authorization/);
  await stop(on);
});

test('bad input gets a 4xx {error: {code, message}}, never a 500, and the server keeps serving', async () => {
  const s = await start({ bodyLimit: 64 * 1024 });
  const raw = (body: string | Uint8Array, type = 'application/json', url = '/v1/encode') => call(s, 'POST', url, body, { 'content-type': type });
  assertError(await raw('{"prompts": ["a"'), 400, 'invalid_json');
  assertError(await raw(''), 400, 'invalid_json');
  assertError(await raw('prompts=a', 'text/plain'), 415, 'unsupported_media_type');
  assertError(await raw('prompts=a', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
  assertError(await raw(JSON.stringify({ prompts: ['x'.repeat(900)], pad: 'y'.repeat(70 * 1024) })), 413, 'body_too_large');
  assertError(await raw(Buffer.concat([Buffer.from('{"prompts": ["a '), Buffer.from([0xc3, 0x28]), Buffer.from('"]}')])), 400, 'invalid_utf8');
  assertError(await raw(JSON.stringify({ prompts: [1, 2] })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: ['a', null] })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: 'a zebra' })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: [] })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: [['nested']] })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify(['a zebra'])), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: ['a'], policy: 'sometimes' })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: ['a'], extra: 1 })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: ['x'.repeat(1001)] })), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: Array.from({ length: 10_000 }, () => 'a') })), 413, 'too_many_prompts');
  assertError(await raw(JSON.stringify({ prompts: Array.from({ length: 65 }, () => 'a') }), 'application/json', '/v1/classify'), 413, 'too_many_prompts');
  assertError(await raw(JSON.stringify({ prompts: ['a'], eraser: 'deadbeef0000' })), 404, 'unknown_eraser');
  assertError(await raw(JSON.stringify({ prompts: ['a'], top: -1 }), 'application/json', '/v1/classify'), 400, 'invalid_request');
  assertError(await raw(JSON.stringify({ prompts: ['a'], top: '8' }), 'application/json', '/v1/classify'), 400, 'invalid_request');
  assertError(await call(s, 'POST', '/v1/encode'), 400, 'invalid_request');
  assertError(await call(s, 'GET', '/v1/features'), 400, 'invalid_request');
  assertError(await call(s, 'GET', '/v1/features?prompt=a&top=0'), 400, 'invalid_request');
  assertError(await call(s, 'GET', '/v1/features?prompt=a&prompt=b'), 400, 'invalid_request');
  assertError(await call(s, 'GET', '/v1/explain?latent=-1'), 400, 'invalid_request');
  assertError(await call(s, 'DELETE', '/v1/concepts/%E0%A4%A'), 400, 'bad_url');
  assertError(await call(s, 'GET', '/nope'), 404, 'not_found');
  assertError(await call(s, 'PUT', '/v1/encode', {}), 404, 'not_found');
  // Concepts: names are data, never paths; unknown ones are 404s.
  assertError(await call(s, 'DELETE', `/v1/concepts/${encodeURIComponent('../../etc/passwd')}`), 404, 'unknown_concept');
  assertError(await call(s, 'DELETE', '/v1/concepts/volcano'), 404, 'unknown_concept');
  assertError(await call(s, 'POST', '/v1/concepts', { name: 'bad\u0000name' }), 400, 'invalid_request');
  assertError(await call(s, 'POST', '/v1/concepts', { name: '   ' }), 400, 'invalid_request');
  assertError(await call(s, 'POST', '/v1/concepts', { name: 'dog', prompts: ['a photo of a dog'] }), 422, 'concept_empty');
  assertError(await call(s, 'POST', '/v1/calibrate', { recall: 0.9, fpr: 0.1 }), 400, 'invalid_request');
  assertError(await call(s, 'POST', '/v1/calibrate', { recall: 1.5 }), 400, 'invalid_request');
  const text = await (await fetch(`${s.url}/metrics`)).text();
  assert.doesNotMatch(text, /status="5\d\d"/);
  assert.equal((await call(s, 'POST', '/v1/encode', { prompts: ['a zebra'] })).status, 200);
  assert.deepEqual(loadEraser(s.eraserPath).concepts.map((c) => c.name), ['zebra', 'lighthouse']);
  await stop(s);
});

test('an uncalibrated eraser: encode with the gate is a 409, classify and policy always still work', async () => {
  const r = await start({}, (spec) => ({ ...spec, threshold: null }));
  assertError(await call(r, 'POST', '/v1/encode', { prompts: ['a zebra'] }), 409, 'not_calibrated');
  assert.equal((await call(r, 'POST', '/v1/encode', { prompts: ['a zebra'], policy: 'always' })).json['results'][0].erased, true);
  assert.equal((await call(r, 'POST', '/v1/classify', { prompts: ['a zebra'] })).json['results'][0].threshold, null);
  await stop(r);
});

test('concept edits and recalibration are persisted to the eraser file and used at once', async () => {
  const s = await start();
  const volcano = 'a volcano erupting';
  const before = (await call(s, 'POST', '/v1/classify', { prompts: [volcano], top: 0 })).json['results'][0];
  assert.equal(before.erased, false);

  const add = await call(s, 'POST', '/v1/concepts', { name: 'volcano', prompts: ['a volcano erupting', 'a volcano at night'] });
  assert.equal(add.status, 201, JSON.stringify(add.json));
  assert.equal(add.json['concept'].name, 'volcano');
  const onDisk = loadEraser(s.eraserPath);
  assert.deepEqual(onDisk.concepts.map((c) => c.name), ['zebra', 'lighthouse', 'volcano']);
  assert.equal(add.json['eraser'], (await call(s, 'GET', '/readyz')).json['eraser']);
  const after = (await call(s, 'POST', '/v1/classify', { prompts: [volcano], top: 0 })).json['results'][0];
  assert.ok(after.score > before.score);
  assert.equal((await call(s, 'POST', '/v1/concepts', { name: 'volcano', prompts: ['a volcano at night'] })).status, 200); // replaced

  const cal = await call(s, 'POST', '/v1/calibrate', { recall: 1 });
  assert.equal(cal.status, 200, JSON.stringify(cal.json));
  const calibrated = loadEraser(s.eraserPath);
  assert.equal(calibrated.calibration?.method, 'recall');
  assert.equal(calibrated.calibration?.stale, undefined);
  assert.equal(cal.json['threshold'], calibrated.threshold);

  const del = await call(s, 'DELETE', '/v1/concepts/volcano');
  assert.equal(del.status, 200);
  assert.deepEqual(del.json['concepts'], ['zebra', 'lighthouse']);
  assert.deepEqual(loadEraser(s.eraserPath).concepts.map((c) => c.name), ['zebra', 'lighthouse']);
  assert.equal(loadEraser(s.eraserPath).calibration?.stale, true);
  // Templates when no prompts are given.
  const templ = await call(s, 'POST', '/v1/concepts', { name: 'a volcano' });
  assert.equal(templ.status, 201);
  assert.equal(templ.json['concept'].prompts[0], 'a photo of a volcano');
  assert.deepEqual(fs.readdirSync(path.dirname(s.eraserPath)), ['eraser.json']); // no temp files left behind
  await stop(s);
});

test('readiness: /readyz and /v1 answer 503 + Retry-After until the models are loaded; /healthz answers at once', async () => {
  const { model, sae, spec } = await setup();
  const eraserPath = path.join(tmpDir(), 'eraser.json');
  saveEraser(eraserPath, spec);
  let release!: (m: TextModel) => void;
  const s = await createServer({ model: new Promise<TextModel>((r) => (release = r)), sae, eraserPath, web: false });
  const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
  const r: Running = { ...s, url, eraserPath };
  running.add(r);
  assert.equal((await call(r, 'GET', '/healthz')).status, 200);
  const notReady = await call(r, 'GET', '/readyz');
  assertError(notReady, 503, 'not_ready');
  assert.equal(notReady.headers.get('retry-after'), '1');
  assertError(await call(r, 'POST', '/v1/encode', { prompts: ['a'] }), 503, 'not_ready');
  release(model);
  await s.ready;
  assert.equal((await call(r, 'GET', '/readyz')).status, 200);
  await stop(r);
});

test('graceful shutdown: an in-flight request finishes, new connections are refused', async () => {
  const s = await start({ maxWaitMs: 1000 });
  const inFlight = call(s, 'POST', '/v1/encode', { prompts: ['a photo of a zebra'] });
  await untilQueued(s, 1);
  const closed = stop(s);
  const res = await inFlight;
  assert.equal(res.status, 200);
  assert.equal(res.json['results'][0].erased, true);
  await closed;
  await assert.rejects(fetch(`${s.url}/healthz`));
});

test('itd serve (CLI): listens, loads, requires the token from --token-file, SIGTERM drains and exits 0', { timeout: 120_000 }, async () => {
  const { sae, spec } = await setup();
  const dir = tmpDir();
  const saeDir = path.join(dir, 'sae');
  saveSae(saeDir, sae);
  saveEraser(path.join(dir, 'eraser.json'), { ...spec, saeId: saeIdentity(saeDir) });
  fs.writeFileSync(path.join(dir, 'token.txt'), `${TOKEN}\n`);
  const run = "const { parseFlags } = await import('./src/cli/args.ts'); const { serveCommand } = await import('./src/cli/serve-run.ts'); " +
    'await serveCommand.run(parseFlags(serveCommand, process.argv.slice(1)).flags, []);';
  const args = ['--model', tinyModel(), '--sae', saeDir, '--eraser', path.join(dir, 'eraser.json'), '--port', '0', '--token-file', path.join(dir, 'token.txt')];
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', run, '--', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const seen = (re: RegExp) => new Promise<RegExpExecArray>((resolve, reject) => {
    const check = () => {
      const m = re.exec(stderr);
      if (m) resolve(m);
    };
    child.stderr!.on('data', (d) => ((stderr += d), check()));
    child.once('exit', () => reject(new Error(`itd serve exited early:\n${stderr}`)));
    check();
  });
  const url = (await seen(/listening on (http:\/\/\S+)/))[1]!;
  assert.match(url, /^http:\/\/127\.0\.0\.1:[1-9][0-9]*$/); // the port actually bound, not the 0 asked for
  const auth = { authorization: `Bearer ${TOKEN}` };
  await seen(/ready at/);
  assert.equal((await fetch(`${url}/v1/concepts`)).status, 401);
  assert.equal((await fetch(`${url}/v1/concepts`, { headers: auth })).status, 200);
  const exit = new Promise<number | null>((r) => child.once('exit', r));
  child.kill('SIGTERM');
  assert.equal(await exit, 0, stderr);
  assert.match(stderr, /SIGTERM: finishing in-flight requests[\s\S]*stopped/);
});

test('/v1/generate goes through the configured pipeline: erased and original images', async () => {
  const calls: [boolean, number, number][] = [];
  const png = (tag: number) => Uint8Array.of(0x89, 0x50, 0x4e, 0x47, tag);
  const pipeline: ImagePipeline = {
    text: await loadTextConditioning(tinyModel()),
    async generate(prompts, o) {
      const c = await o.condition(prompts); // conditioning comes from the server's live eraser
      calls.push([o.erase, c.embeddings.length, c.erased![0]!]);
      return prompts.map(() => ({ png: png(o.erase ? 1 : 0) }));
    },
  };
  const s = await start({ pipeline });
  const r = await call(s, 'POST', '/v1/generate', { prompts: ['a photo of a zebra'], compare: true, seed: 3, steps: 2 });
  assert.equal(r.status, 200);
  const D = (await setup()).model.config.hiddenSize;
  assert.deepEqual(calls, [[true, 77 * D, 1], [false, 77 * D, 0]]);
  assert.deepEqual([...Buffer.from(r.json['results'][0].erased, 'base64')], [...png(1)]);
  assert.deepEqual([...Buffer.from(r.json['results'][0].original, 'base64')], [...png(0)]);
  assertError(await call(s, 'POST', '/v1/generate', { prompts: ['a', 'b', 'c', 'd', 'e'] }), 413, 'too_many_prompts');
  assertError(await call(s, 'POST', '/v1/generate', { prompts: ['a'], width: 100 }), 400, 'invalid_request');
  assert.equal((await call(s, 'GET', '/v1/info')).json['generate'], true);
  await stop(s);
});

test('Batcher: groups by kind up to maxBatch, keeps order, runs exclusive tasks alone, bounds the queue, honours deadlines', async () => {
  const runs: string[] = [];
  const kind = (name: string): BatchKind<number, number> => ({
    name, batchable: true,
    run: async (xs) => (runs.push(`${name}:${xs.join(',')}`), await new Promise((r) => setTimeout(r, 5)), xs.map((x) => x * 10)),
  });
  const a = kind('a');
  const b = kind('b');
  // maxWaitMs well above scheduling jitter on a loaded machine, so only maxBatch decides the first split.
  const batcher = new Batcher({ maxBatch: 3, maxWaitMs: 200, maxQueue: 8 });
  const out = await Promise.all([batcher.submit(a, [1, 2]), batcher.submit(b, [7]), batcher.submit(a, [3, 4]), batcher.exclusive(async () => (runs.push('task'), 'x'))]);
  assert.deepEqual(out, [[10, 20], [70], [30, 40], 'x']);
  assert.deepEqual(runs, ['a:1,2,3', 'b:7', 'a:4', 'task']);

  await assert.rejects(batcher.submit(a, Array.from({ length: 9 }, (_, i) => i)), QueueFullError);
  const slow = new Batcher({ maxBatch: 4, maxWaitMs: 200, maxQueue: 8 });
  const ac = new AbortController();
  const pending = slow.submit(a, [1], ac.signal);
  assert.equal(slow.depth, 1);
  ac.abort();
  await assert.rejects(pending, (e: unknown) => e instanceof DeadlineError && e.queued);
  assert.equal(slow.depth, 0);
  const failing: BatchKind<number, number> = { name: 'f', batchable: true, run: async () => { throw new Error('boom'); } };
  await assert.rejects(batcher.submit(failing, [1]), /boom/);
  assert.deepEqual(await batcher.submit(a, [5]), [50]); // still serving
});

test('encodeSafetensors writes what SafetensorsFile reads', () => {
  const body = encodeSafetensors({ b: { dtype: 'U8', shape: [3], data: Uint8Array.of(1, 0, 1) }, a: { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, -2, 3.5, 1e-8) } }, { k: 'v' });
  const file = path.join(tmpDir(), 'x.safetensors');
  fs.writeFileSync(file, body);
  const st = SafetensorsFile.open(file);
  assert.deepEqual(st.names(), ['a', 'b']);
  assert.deepEqual(st.readF32('a'), Float32Array.of(1, -2, 3.5, 1e-8));
  assert.deepEqual([...st.readI32('b')], [1, 0, 1]);
  assert.deepEqual(st.metadata, { k: 'v' });
  st.close();
  assert.equal(new DataView(body.buffer).getBigUint64(0, true) % 8n, 0n);
  assert.throws(() => encodeSafetensors({ a: { dtype: 'F32', shape: [3], data: Float32Array.of(1) } }), /does not match/);
});

test('Batcher admission counts prompts and refuses work that would miss its deadline, at once', async () => {
  const slowKind: BatchKind<number, number> = { name: 's', batchable: true, run: async (xs) => (await new Promise((r) => setTimeout(r, 20 * xs.length)), xs) };
  const b = new Batcher({ maxBatch: 4, maxWaitMs: 0, maxQueue: 64, budgetMs: 300 });
  assert.equal(b.refusal(64), undefined); // nothing measured yet: only the prompt bound applies
  assert.ok(b.refusal(65) instanceof QueueFullError);
  await b.submit(slowKind, [1, 2, 3, 4]); // ~20 ms per item measured
  assert.ok(b.estimatedWaitMs(4) >= 60, `estimate ${b.estimatedWaitMs(4)}`);
  const t0 = performance.now();
  await assert.rejects(b.submit(slowKind, Array.from({ length: 40 }, (_, i) => i)), (e: unknown) => e instanceof QueueFullError && /deadline/.test(e.message) && e.retryAfterS >= 1);
  assert.ok(performance.now() - t0 < 50, 'refusal must not wait');
  assert.equal(b.depth, 0);
  assert.deepEqual(await b.submit(slowKind, [1, 2]), [1, 2]); // what fits the budget still runs
  // Exclusive tasks are not held to the prompt-time budget.
  assert.equal(await b.exclusive(async () => 'ok'), 'ok');
});

test('overload: a refused request is answered 429 before its body is parsed, paced; admitted ones succeed', async () => {
  const s = await start({ maxQueue: 4, maxPrompts: 4, maxWaitMs: 1500, refusalPaceMs: 300 });
  const first = call(s, 'POST', '/v1/encode', { prompts: ['a', 'b', 'c', 'd'] });
  await untilQueued(s, 4);
  const t0 = performance.now();
  const early = await call(s, 'POST', '/v1/encode', '{"prompts": [not json');
  assertError(early, 429, 'queue_full');
  assert.ok(performance.now() - t0 >= 290, 'a refusal is held for refusalPaceMs, so clients retrying at once cannot spin');
  assert.equal((await first).status, 200);
  assertError(await call(s, 'POST', '/v1/encode', '{"prompts": [not json'), 400, 'invalid_json'); // room again: parsed as usual
  await stop(s);
});

test('encode cache: hits are bit-identical to uncached results, keyed by token ids, cleared and bypassed after eraser edits', async () => {
  const prompts = ['a photo of a zebra', '', 'a cliff by the sea'];
  const binary = async (s: Running, ps: string[], policy = 'gate') => {
    const res = await fetch(`${s.url}/v1/encode`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/octet-stream' }, body: JSON.stringify({ prompts: ps, policy }) });
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  };
  const lookups = async (s: Running) => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    return { hit: metric(text, 'itd_encode_cache_lookups_total{result="hit"}') || 0, miss: metric(text, 'itd_encode_cache_lookups_total{result="miss"}') || 0, bytes: metric(text, 'itd_encode_cache_bytes') };
  };
  const plain = await start({ cacheMiB: 0 });
  const uncached = await binary(plain, prompts);
  await stop(plain);

  const s = await start();
  const miss = await binary(s, prompts);
  assert.deepEqual(await lookups(s), { hit: 0, miss: 3, bytes: (await lookups(s)).bytes });
  assert.ok((await lookups(s)).bytes > 3 * 77 * 4);
  const hit = await binary(s, prompts);
  assert.equal((await lookups(s)).hit, 3);
  assert.ok(hit.equals(miss) && miss.equals(uncached), 'cached bytes differ from uncached ones');
  await binary(s, ['a  photo of a   ZEBRA']); // CLIP lowercases and collapses whitespace: the same tokens, one entry
  assert.equal((await lookups(s)).hit, 4);
  const never = await binary(s, prompts.slice(0, 1), 'never'); // the policy is part of the key
  assert.equal((await lookups(s)).miss, 4);
  assert.ok(!never.equals(miss.subarray(0, never.length)));

  const add = await call(s, 'POST', '/v1/concepts', { name: 'cliff', prompts: ['a cliff by the sea', 'a cliff at dusk'] });
  assert.equal(add.status, 201, JSON.stringify(add.json));
  assert.equal((await lookups(s)).bytes, 0);
  const edited = await call(s, 'POST', '/v1/encode', { prompts });
  assert.equal((await lookups(s)).miss, 7);
  assert.equal(edited.json['eraser'], add.json['eraser']);
  await stop(s);
});

test('EncodeCache is bounded in bytes and evicts the least recently used entry', () => {
  const row = (eraser: string) => ({ last: new Float32Array(1000), pooler: new Float32Array(10), erased: false, score: 0, concepts: [], truncated: 0, eraser });
  const cache = new EncodeCache(3 * (4040 + 512));
  for (const t of ['a', 'b', 'c']) cache.set('gate', t, row('e1'));
  assert.ok(cache.get('e1', 'gate', 'a')); // a is now the most recent
  cache.set('gate', 'd', row('e1'));
  assert.equal(cache.get('e1', 'gate', 'b'), undefined);
  assert.ok(cache.get('e1', 'gate', 'a') && cache.get('e1', 'gate', 'd'));
  assert.ok(cache.bytes <= 3 * (4040 + 512));
  assert.equal(cache.get('e2', 'gate', 'a'), undefined); // another eraser id never matches
});

test('DNS rebinding: without a token only loopback or allow-listed Host names are answered; cross-origin edits are refused', async () => {
  assert.equal(hostName('127.0.0.1:8080'), '127.0.0.1');
  assert.equal(hostName('[::1]:8080'), '::1');
  assert.equal(hostName('LocalHost'), 'localhost');
  assert.equal(hostName('a b'), undefined);
  const s = await start({ allowedHosts: ['Itd.Lan'] });
  const inject = async (method: 'GET' | 'POST', url: string, headers: Record<string, string>, payload?: unknown) => {
    const r = await s.app.inject({ method, url, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
    return { status: r.statusCode, json: r.json() as Json };
  };
  for (const host of ['localhost:8080', '127.0.0.1', '127.1.2.3:9', '[::1]:8080', 'itd.lan:8080']) assert.equal((await inject('GET', '/v1/info', { host })).status, 200, host);
  for (const host of ['evil.example:8080', 'evil.example', '127.0.0.1.evil.example', '0.0.0.0:8080', 'localhost.evil.example']) {
    assertError(await inject('GET', '/v1/info', { host }), 403, 'host_not_allowed');
    assertError(await inject('POST', '/v1/concepts', { host }, { name: 'x' }), 403, 'host_not_allowed');
  }
  // State-changing requests with an Origin: same origin only.
  const edit = { name: 'evil', prompts: ['a photo of a dog'] };
  assertError(await inject('POST', '/v1/concepts', { host: '127.0.0.1:8080', origin: 'http://evil.example' }, edit), 403, 'origin_not_allowed');
  assertError(await inject('POST', '/v1/concepts', { host: '127.0.0.1:8080', origin: 'null' }, edit), 403, 'origin_not_allowed');
  assertError(await inject('POST', '/v1/concepts', { host: '127.0.0.1:8080', origin: 'http://127.0.0.1:9999' }, edit), 403, 'origin_not_allowed');
  assert.deepEqual(loadEraser(s.eraserPath).concepts.map((c) => c.name), ['zebra', 'lighthouse']);
  assert.equal((await inject('POST', '/v1/classify', { host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' }, { prompts: ['a'], top: 0 })).status, 200);
  assert.equal((await inject('GET', '/v1/info', { host: '127.0.0.1:8080', origin: 'http://evil.example' })).status, 200); // reads: the browser's CORS rule keeps the reply from the page
  await stop(s);
  // With a token, Host is not restricted (the token is the defence), cross-origin edits still are.
  const t = await start({ token: TOKEN, cors: 'http://app.example' });
  const auth = { authorization: `Bearer ${TOKEN}` };
  assert.equal((await t.app.inject({ method: 'GET', url: '/v1/info', headers: { ...auth, host: 'gpu-box.lan:8080' } })).statusCode, 200);
  const cross = await t.app.inject({ method: 'POST', url: '/v1/classify', headers: { ...auth, host: 'gpu-box.lan:8080', origin: 'http://app.example', 'content-type': 'application/json' }, payload: '{"prompts":["a"],"top":0}' });
  assert.equal(cross.statusCode, 200); // the configured CORS origin
  await stop(t);
});

/** Sends raw bytes and reads until the server closes the connection (or 5 s pass). */
async function raw(s: Running, request: string): Promise<{ status: number; json: Json; text: string }> {
  const { port } = new URL(s.url);
  const text = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1', () => sock.write(request));
    let got = '';
    sock.setTimeout(5000, () => sock.destroy());
    sock.on('data', (d) => (got += d.toString('latin1'))).on('close', () => resolve(got)).on('error', reject);
  });
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return { status, json: body.startsWith('{') ? JSON.parse(body) : {}, text };
}

test('errors raised below the routes (431, bad Content-Length, malformed requests) use the {error: {code, message}} format', async () => {
  const s = await start();
  const big = await raw(s, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  assertError(big, 431, 'headers_too_large');
  assert.match(big.text, /content-type: application\/json; charset=utf-8/i);
  const post = (headers: string, body: string) => `POST /v1/encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${headers}\r\n${body}`;
  assertError(await raw(s, post('Content-Length: abc\r\n', '{}')), 400, 'bad_content_length');
  assertError(await raw(s, post('Content-Length: 2\r\nContent-Length: 3\r\n', '{}')), 400, 'bad_content_length');
  assertError(await raw(s, post('Content-Length: 2\r\nTransfer-Encoding: chunked\r\n', '{}')), 400, 'bad_transfer_encoding');
  assertError(await raw(s, 'HELLO THERE\r\n\r\n'), 400, 'bad_request');
  assert.equal((await raw(s, 'GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')).status, 200); // still serving
  await stop(s);
});

test('concept names must be well-formed Unicode, in the library and the server', async () => {
  const { model, sae, spec } = await setup();
  for (const name of ['a\ud800b', '\udfff', 'x\udc00\ud800', '   ']) {
    await assert.rejects(addConcept(spec, model, sae, name, ['a photo of a dog']), (e: unknown) => e instanceof ItdError && e.code === 'usage' && e.field === 'name');
  }
  assert.equal(conceptNameProblem('zebra \u{1F993} 斑马'), undefined); // astral characters are surrogate pairs, which are fine
  assert.throws(() => validateEraser({ ...spec, concepts: [{ ...spec.concepts[0]!, name: 'z\ud83e' }] }, 'e.json'), /e\.json: field .concepts\[0\]\.name. .* lone surrogate/);
  const s = await start();
  // JSON escapes let a client send a lone surrogate; the schema alone would accept it.
  assertError(await call(s, 'POST', '/v1/concepts', '{"name": "zebra\\ud800", "prompts": ["a photo of a dog"]}'), 400, 'invalid_name');
  assert.deepEqual(loadEraser(s.eraserPath).concepts.map((c) => c.name), ['zebra', 'lighthouse']);
  const emoji = await call(s, 'POST', '/v1/concepts', { name: 'zebra \u{1F993}', prompts: ['a photo of a zebra'] });
  assert.equal(emoji.status, 201, JSON.stringify(emoji.json));
  assert.equal((await call(s, 'DELETE', `/v1/concepts/${encodeURIComponent('zebra \u{1F993}')}`)).status, 200); // and it can be removed again
  await stop(s);
});

test('calibration refuses degenerate input unless forced: too few prompts, a threshold erasing every other prompt', async () => {
  const s = await start();
  const cal = (body: Json) => call(s, 'POST', '/v1/calibrate', body);
  assertError(await cal({ target: ['a photo of a zebra'] }), 422, 'cannot_calibrate');
  assert.match((await cal({ retain: ['a photo of a dog'] })).json['error'].message, /at least 2 other prompts, got 1/);
  // Targets that score below every retain prompt: recall 1 puts the threshold under all of them.
  const everything = await cal({ target: ['a photo of a dog', 'a photo of a car'], retain: TARGETS.flatMap((t) => t.prompts) });
  assertError(everything, 422, 'cannot_calibrate');
  assert.match(everything.json['error'].message, /erases all 6 other prompts/);
  const before = loadEraser(s.eraserPath).threshold;
  assert.equal(before, (await call(s, 'GET', '/v1/concepts')).json['threshold']); // nothing was saved
  const forced = await cal({ target: ['a photo of a zebra'], force: true });
  assert.equal(forced.status, 200, JSON.stringify(forced.json));
  assert.equal(loadEraser(s.eraserPath).calibration?.nTarget, 1);
  await stop(s);
});
