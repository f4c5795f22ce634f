// `itd eval-images`: image files, report statistics, and the bundled NSFWJS / face-api models run
// offline on synthetic images. PNG decoding itself is tested in png.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../src/cli/args.js';
import { evalImagesCommand } from '../src/cli/eval-images.js';
import {
  bestDistance,
  encodePng,
  evaluateImages,
  FaceIdentifier,
  fitWithin,
  ImageFormatError,
  listImages,
  NSFW_CLASSES,
  NudityClassifier,
  nudityScore,
  parseNsfwClasses,
  readImage,
  renderHtml,
  summarize,
  writeReport,
  type ImageResult,
  type NsfwScores,
  type RgbImage,
} from '../src/evaluate/index.js';

process.env.ITD_QUIET = '1';
const FIXTURES = join(import.meta.dirname, 'fixtures', 'images');
const work = fs.mkdtempSync(join(tmpdir(), 'itd-eval-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

function solid(width: number, height: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = rgb[i % 3]!;
  return { width, height, data };
}

function noise(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) data[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return { width, height, data };
}

const scores = (p: Partial<NsfwScores>): NsfwScores => ({ Drawing: 0, Hentai: 0, Neutral: 0, Porn: 0, Sexy: 0, ...p });

test('fitWithin averages boxes and never enlarges', () => {
  const checker: RgbImage = { width: 4, height: 2, data: Uint8Array.from([0, 0, 0, 200, 200, 200, 10, 20, 30, 10, 20, 30, 100, 100, 100, 100, 100, 100, 30, 20, 10, 30, 20, 10]) };
  assert.deepEqual(fitWithin(checker, 2), { width: 2, height: 1, data: Uint8Array.from([100, 100, 100, 20, 20, 20]) });
  assert.equal(fitWithin(checker, 10), checker);
});

/** Binary PPM (P6, maxval 255) pixels, as the fixtures' ImageMagick script wrote them. */
function readPpm(path: string): RgbImage {
  const buf = fs.readFileSync(path);
  const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(buf.toString('latin1', 0, 32))!;
  return { width: Number(m[1]), height: Number(m[2]), data: buf.subarray(m[0].length) };
}

function worstDiff(a: RgbImage, b: RgbImage): number {
  assert.deepEqual([a.width, a.height], [b.width, b.height]);
  let worst = 0;
  for (let i = 0; i < a.data.length; i++) worst = Math.max(worst, Math.abs(a.data[i]! - b.data[i]!));
  return worst;
}

test('readImage (sharp): every PNG flavour as ImageMagick flattens it, JPEG close to its source, lossless WebP exact', async () => {
  for (const f of fs.readdirSync(FIXTURES).filter((n) => n.endsWith('.png'))) {
    assert.ok(worstDiff(await readImage(join(FIXTURES, f)), readPpm(join(FIXTURES, f.replace(/\.png$/, '.ppm')))) <= 1, f);
  }
  // photo.jpg is rgb8's picture at quality 90: same size, within JPEG error of the original (the
  // 23x17 plasma is all high frequencies and chroma is subsampled: ~6 levels; a wrong colour
  // conversion or channel order is tens of levels off).
  const jpeg = await readImage(join(FIXTURES, 'photo.jpg'));
  const source = readPpm(join(FIXTURES, 'rgb8.ppm'));
  let sum = 0;
  for (let i = 0; i < jpeg.data.length; i++) sum += Math.abs(jpeg.data[i]! - source.data[i]!);
  assert.ok(sum / jpeg.data.length < 10, `mean |JPEG - source| = ${sum / jpeg.data.length}`);
  const { default: sharp } = await import('sharp');
  const webp = join(work, 'noise.webp');
  const img = noise(31, 19, 4);
  await sharp(img.data, { raw: { width: 31, height: 19, channels: 3 } }).webp({ lossless: true }).toFile(webp);
  assert.deepEqual(await readImage(webp), img);
  const bad = join(work, 'bad.png');
  fs.writeFileSync(bad, 'hello');
  await assert.rejects(readImage(bad), (e: unknown) => e instanceof ImageFormatError && /not a readable PNG, JPEG or WebP/.test(e.message));
});

test('listImages: PNG/JPEG files only, sorted', () => {
  const dir = join(work, 'list');
  fs.mkdirSync(join(dir, 'sub.png'), { recursive: true });
  for (const f of ['b.PNG', 'a.jpg', 'c.jpeg', 'd.webp', 'notes.txt']) fs.writeFileSync(join(dir, f), '');
  assert.deepEqual(listImages(dir).map((p) => p.slice(dir.length + 1)), ['a.jpg', 'b.PNG', 'c.jpeg', 'd.webp']);
});

test('nudity rule: summed classes against the threshold; class names parsed case-insensitively', () => {
  assert.deepEqual(parseNsfwClasses('porn, HENTAI,Sexy'), ['Porn', 'Hentai', 'Sexy']);
  assert.throws(() => parseNsfwClasses('porn,nsfw'), /unknown NSFW class 'nsfw'/);
  const s = scores({ Porn: 0.3, Hentai: 0.15, Sexy: 0.4, Neutral: 0.15 });
  assert.ok(Math.abs(nudityScore(s, { classes: ['Porn', 'Hentai'], threshold: 0.5 }) - 0.45) < 1e-12);
  assert.ok(nudityScore(s, { classes: ['Porn', 'Hentai', 'Sexy'], threshold: 0.5 }) >= 0.5);
});

test('bestDistance: closest reference over all faces, null without faces', () => {
  const d = (...v: number[]) => Float32Array.from(v);
  const face = (descriptor: Float32Array) => ({ score: 1, box: { x: 0, y: 0, width: 1, height: 1 }, descriptor });
  const refs = [
    { file: 'far.png', descriptor: d(3, 4) },
    { file: 'near.png', descriptor: d(0.3, 0.4) },
  ];
  const best = bestDistance([face(d(10, 10)), face(d(0, 0))], refs)!;
  assert.equal(best.reference, 'near.png');
  assert.ok(Math.abs(best.distance - 0.5) < 1e-6);
  assert.equal(bestDistance([], refs), null);
});

test('summarize + reports: rates over evaluated images, failures excluded, HTML self-contained and escaped', () => {
  const results: ImageResult[] = [
    { file: 'a.png', width: 8, height: 8, nudity: { scores: scores({ Porn: 0.9, Neutral: 0.1 }), score: 0.9, nude: true }, identity: { faces: 1, distance: 0.4, reference: 'r.png', match: true } },
    { file: 'b.png', width: 8, height: 8, nudity: { scores: scores({ Neutral: 1 }), score: 0, nude: false }, identity: { faces: 0, distance: null, reference: null, match: false } },
    { file: '<x>.png', error: 'JPEG is not supported' },
  ];
  const report = summarize('/imgs', results, { model: 'MobileNetV2', classes: ['Porn', 'Hentai'], threshold: 0.5 }, { refDir: '/refs', references: ['r.png'], skippedReferences: [], threshold: 0.6 });
  assert.deepEqual([report.images, report.evaluated, report.failed], [3, 2, 1]);
  assert.deepEqual([report.nudity!.nude, report.nudity!.rate, report.nudity!.meanScore], [1, 0.5, 0.45]);
  assert.deepEqual([report.identity!.matched, report.identity!.rate, report.identity!.withFace], [1, 0.5, 1]);
  assert.equal(summarize('/imgs', [results[2]!], { model: 'm', classes: ['Porn'], threshold: 0.5 }).nudity!.rate, null);

  const thumb = `data:image/png;base64,${encodePng(solid(2, 2, [9, 9, 9])).toString('base64')}`;
  const html = renderHtml(report, new Map([['a.png', thumb]]));
  assert.ok(html.includes(`<img src="${thumb}"`));
  assert.ok(html.includes('&#60;x&#62;.png') && !html.includes('<x>'));
  assert.match(html, /nudity: 1\/2 nude = 50\.0%/);
  assert.doesNotMatch(html, /(src|href)="https?:/);

  const paths = writeReport(join(work, 'report'), report, new Map());
  assert.deepEqual(JSON.parse(fs.readFileSync(paths.json, 'utf8')), JSON.parse(JSON.stringify(report)));
  assert.ok(fs.readFileSync(paths.html, 'utf8').startsWith('<!doctype html>'));
});

test('eval-images CLI: usage errors before any model loads', async () => {
  await assert.rejects(evalImagesCommand({ positional: [FIXTURES] }), (e: unknown) => e instanceof UsageError && /--nudity and\/or --identity/.test(e.message));
  await assert.rejects(evalImagesCommand({ positional: [], nudity: true }), UsageError);
  await assert.rejects(evalImagesCommand({ positional: [FIXTURES], nudity: true, 'nudity-classes': 'lewd' }), /--nudity-classes: unknown NSFW class/);
});

// The bundled models load in a few seconds on the wasm backend, so these run by default.
test('NSFWJS (bundled MobileNetV2, wasm backend) scores synthetic images: five classes summing to 1', async () => {
  const nsfw = await NudityClassifier.load();
  try {
    for (const img of [solid(64, 48, [128, 128, 128]), solid(32, 32, [230, 180, 150]), noise(300, 200, 1)]) {
      const s = await nsfw.classify(img);
      assert.deepEqual(Object.keys(s).sort(), [...NSFW_CLASSES].sort());
      for (const p of Object.values(s)) assert.ok(p >= 0 && p <= 1);
      const sum = Object.values(s).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-3, `sum ${sum}`);
    }
  } finally {
    nsfw.dispose();
  }
});

test('face-api (bundled models from disk) finds no face in synthetic images; missing models are named', async () => {
  await assert.rejects(FaceIdentifier.load(join(work, 'no-models')), /face-api model files missing in .*ssd_mobilenetv1_model-weights_manifest\.json/);
  const faces = await FaceIdentifier.load();
  assert.deepEqual(await faces.faces(noise(160, 120, 7)), []);
  assert.deepEqual(await faces.faces(solid(100, 100, [240, 200, 170])), []);
});

test('evaluateImages end to end: reports written, unreadable images listed, no-face references refused', async () => {
  const dir = join(work, 'gen');
  fs.mkdirSync(dir);
  fs.writeFileSync(join(dir, '0.png'), encodePng(noise(96, 96, 5)));
  fs.writeFileSync(join(dir, '1.png'), encodePng(solid(96, 64, [20, 90, 200])));
  fs.copyFileSync(join(FIXTURES, 'photo.jpg'), join(dir, '2.jpg'));
  fs.writeFileSync(join(dir, '3.webp'), 'not an image');
  const out = join(work, 'gen-report');
  const { report, paths } = await evaluateImages({ dir, nudity: true, out });
  assert.deepEqual([report.images, report.evaluated, report.failed], [4, 3, 1]);
  assert.equal(report.nudity!.nude, 0);
  assert.equal(report.results[2]!.width, 23); // the JPEG is read
  assert.match(report.results[3]!.error!, /not a readable PNG, JPEG or WebP/);
  assert.equal(paths!.json, join(out, 'report.json'));
  const html = fs.readFileSync(paths!.html, 'utf8');
  assert.equal(html.match(/<img src="data:image\/png;base64,/g)?.length, 3);
  await assert.rejects(evaluateImages({ dir, identityRef: FIXTURES }), /no usable reference face in .*rgb8\.png: no face detected/);
});
