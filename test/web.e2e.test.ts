/**
 * The playground in real headless Chromium against a server on 127.0.0.1:0 with a tiny model:
 * calibrate, classify a prompt (decision + coloured tokens + token features), original vs erased
 * images (fake pipeline), add and remove a concept.
 * Skipped when /usr/bin/chromium is missing (CI installs it with scripts/ensure-chromium.sh).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { loadTextConditioning, loadTextModel } from '../src/encoder/index.js';
import { loadEraser, saveEraser } from '../src/select/eraser-file.js';
import { buildEraser } from '../src/select/select.js';
import { createServer, type ImagePipeline } from '../src/serve/index.js';
import { exemplarSae, tinyModel, tmpDir } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
/** A valid 1x1 PNG: the fake pipeline's image. */
const PIXEL = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
const SCREENSHOT = '/tmp/itd-playground.png';
const skip = fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: run scripts/ensure-chromium.sh to install it`;

test('playground: classify a prompt, see tokens and the decision, compare images, add and remove a concept', { skip, timeout: 120_000 }, async () => {
  const model = await loadTextModel(tinyModel());
  const retain = ['a photo of a dog', 'a field of flowers', 'a house at night', 'a photo of a car'];
  const zebra = ['a photo of a zebra', 'a zebra in a field', 'a painting of a zebra at dusk'];
  const volcano = ['a volcano erupting', 'a volcano at night'];
  const sae = await exemplarSae(model, [...zebra, ...retain, ...volcano], 8, 8);
  const spec = await buildEraser(model, sae, { targets: [{ name: 'zebra', prompts: zebra }], retain, kSel: 8, scale: -8, mode: 'official', layer: 8, saeId: 'e2e' });
  const eraserPath = path.join(tmpDir(), 'eraser.json');
  saveEraser(eraserPath, spec); // uncalibrated: the page calibrates it

  const generated: boolean[] = [];
  const pipeline: ImagePipeline = { text: await loadTextConditioning(tinyModel()), generate: async (prompts, o) => (generated.push(o.erase), prompts.map(() => ({ png: PIXEL }))) };
  const server = await createServer({ model, sae, eraserPath, pipeline });
  await server.ready;
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())));
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]');
    assert.deepEqual(await page.locator('[data-testid="concept"] strong').allTextContents(), ['zebra']);
    assert.match(await page.locator('#calibration').textContent() ?? '', /uncalibrated/);

    await page.click('#calibrate-form button');
    await page.waitForFunction(() => /recall 1/.test(document.querySelector('#calibration')?.textContent ?? ''));
    assert.notEqual(loadEraser(eraserPath).threshold, null);

    await page.fill('[data-testid="prompt"]', 'a photo of a zebra');
    await page.press('[data-testid="prompt"]', 'Enter');
    await page.waitForSelector('[data-testid="verdict"]');
    assert.equal(await page.textContent('[data-testid="verdict"]'), 'ERASE');
    assert.match(await page.textContent('[data-testid="fired"]') ?? '', /zebra/);
    const tokens = page.locator('[data-testid="token"]');
    assert.ok((await tokens.count()) >= 5);
    assert.match((await tokens.allTextContents()).join(''), /zebra/);
    await tokens.first().click();
    await page.waitForSelector('#token-detail table');
    assert.ok((await page.locator('#token-detail tr').count()) > 1);
    await page.click('#generate-form button');
    await page.waitForFunction(() => Array.from(document.querySelectorAll<HTMLImageElement>('#images img')).filter((i) => i.complete && i.naturalWidth === 1).length === 2);
    assert.deepEqual(await page.locator('#images figcaption').allTextContents(), ['original', 'erased']);
    assert.deepEqual(generated, [true, false]);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.fill('[data-testid="concept-name"]', 'volcano');
    await page.fill('#concept-prompts', volcano.join('\n'));
    await page.click('[data-testid="add-concept"]');
    await page.waitForSelector('[data-testid="remove-volcano"]');
    assert.deepEqual(await page.locator('[data-testid="concept"] strong').allTextContents(), ['zebra', 'volcano']);
    assert.deepEqual(loadEraser(eraserPath).concepts.map((c) => c.name), ['zebra', 'volcano']);

    await page.click('[data-testid="remove-volcano"]');
    await page.waitForSelector('[data-testid="remove-volcano"]', { state: 'detached' });
    assert.deepEqual(await page.locator('[data-testid="concept"] strong').allTextContents(), ['zebra']);
    assert.deepEqual(loadEraser(eraserPath).concepts.map((c) => c.name), ['zebra']);
    assert.equal(await page.locator('#message').isVisible(), false, await page.textContent('#message') ?? '');
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    await server.close();
  }
});
