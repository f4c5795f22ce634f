// The bench erase / demo HTML: metadata table, labelled plots with legends, per-concept table,
// example prompts with decisions; and the axis tick helper.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import type { TextEvalResult } from '../src/evaluate/text.js';
import { metricsTable, niceTicks, writeTextReport } from '../src/evaluate/text-report.js';
import { tmpDir } from './helpers.js';

test('niceTicks: round 1/2/5 steps covering the range', () => {
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(-12, -2), [-12, -10, -8, -6, -4, -2]);
  assert.deepEqual(niceTicks(0, 7), [0, 2, 4, 6]);
  assert.deepEqual(niceTicks(0, 1000, 4), [0, 500, 1000]);
});

const result: TextEvalResult = {
  accE: 0, accR: 1, hO: 1, auroc: 0.75, tpr: 1, fprNeutral: 0.5, fprRetained: 0, neutralDrift: 0.01, neutralDriftPassed: 0,
  latency: { plainMs: 2, erasedMs: 3, ratio: 1.5 }, gateAgreement: { precision: 0.5, recall: 1, exactPairs: 2, gatePairs: 4 },
  threshold: 1e-3, scores: { target: [2e-3, 5e-3], retained: [0], neutral: [1e-5, 2e-3] }, roc: [[0, 0], [0.5, 1], [1, 1]],
  counts: { targetPrompts: 2, retainedPrompts: 1, neutralPrompts: 2 },
  concepts: [
    { name: 'zebra', role: 'target', features: 7, keptForRetain: 3, prompts: 2, erased: 2, identified: 0, meanScore: 3.5e-3, threshold: 1e-3 },
    { name: 'dog', role: 'retained', features: 0, keptForRetain: 0, prompts: 1, erased: 0, identified: 1, meanScore: 0, threshold: null },
  ],
  examples: [
    { role: 'target', concept: 'zebra', prompt: 'a <b>zebra</b>', score: 2e-3, erased: true, identified: false, fired: ['zebra'], conceptScores: { zebra: 2e-3 } },
    { role: 'neutral', concept: null, prompt: 'a bowl of fruit', score: 1e-5, erased: false, identified: null, fired: [], conceptScores: { zebra: 1e-5 } },
  ],
};

test('report.html: run table, metrics, labelled plots with legends, concepts, example decisions (escaped)', () => {
  const dir = tmpDir();
  const { html, json } = writeTextReport(dir, result, { model: 'sd14', kSel: 128, evalTemplates: [3, 4] });
  const page = fs.readFileSync(html, 'utf8');
  assert.match(page, /<tr><td>model<\/td><td><code>sd14<\/code><\/td><\/tr>/);
  assert.match(page, /<tr><td>evalTemplates<\/td><td><code>3, 4<\/code><\/td><\/tr>/);
  assert.match(page, /<tr><td>threshold<\/td><td><code>1\.0000e-3<\/code><\/td><\/tr>/);
  for (const line of metricsTable(result).split('\n')) assert.ok(page.includes(line.split('  ').pop()!.trim()), line);
  assert.equal(page.match(/<svg /g)?.length, 2);
  for (const label of ['log10 gate score', 'prompts', 'false-positive rate (neutral prompts erased)', 'true-positive rate (targets erased)']) assert.ok(page.includes(`>${label}</text>`), label);
  for (const legend of ['target (2)', 'retained (1)', 'neutral (2)', 'threshold', 'gate (AUROC 0.750)', 'chance']) assert.ok(page.includes(`>${legend}</text>`), legend);
  assert.match(page, /<td>zebra<\/td><td><span[^>]*>target<\/span><\/td><td class="n">7<\/td><td class="n">3<\/td><td class="n">3\.500e-3<\/td><td class="n">2 \/ 2<\/td><td>0 \/ 2 <span class="pass">\(erased\)<\/span><\/td>/);
  assert.match(page, /<td>a &#60;b&#62;zebra&#60;\/b&#62;<\/td><td class="n">2\.000e-3<\/td><td><span class="erase">ERASE<\/span><\/td><td>zebra<\/td><td>no<\/td>/);
  assert.match(page, /<td>a bowl of fruit<\/td><td class="n">1\.000e-5<\/td><td><span class="pass">pass<\/span><\/td>/);
  assert.ok(!page.includes('<b>zebra'), 'prompts are escaped');
  assert.deepEqual(JSON.parse(fs.readFileSync(json, 'utf8')).concepts, result.concepts);
});
