// bench:encode-profile — where the time of `itd encode` goes, phase by phase, in the compiled JS
// users run (dist/, after `npm run build`): process start, module loading, tokenizer, identity hash,
// weight checks, onnxruntime session creation, the forward (1 prompt, then 64 at batch 32), output.
// Mirrors what `itd encode` does (loadClipPart + encodeConditioning) with a clock around each step.
//   npm run bench:encode-profile [-- MODEL_DIR]   (default: the cached sd1 bench model)
import os from 'node:os';
import path from 'node:path';

const startMs = performance.now(); // since process start (performance.timeOrigin)
const root = path.resolve(import.meta.dirname, '..');
const dist = (p) => import(path.join(root, 'dist', p));
const dir = process.argv[2] ?? path.join(root, '.cache', 'bench', 'sd1-0');
const rows = [];
let c = process.cpuUsage();
let w = performance.now();
const phase = (label) => {
  const u = process.cpuUsage(c);
  rows.push([label, performance.now() - w, (u.user + u.system) / 1e3]);
  c = process.cpuUsage();
  w = performance.now();
};
rows.push(['process start (node itself)', startMs, process.cpuUsage().user / 1e3 + process.cpuUsage().system / 1e3]);
c = process.cpuUsage();
await dist('cli/index.js'); // what bin.js imports: every command's modules
const enc = await dist('encoder/index.js');
const md = await dist('encoder/model-dir.js');
const { ClipTextEncoder } = await dist('encoder/clip/encoder.js');
const { openTextEncoderWeights } = await dist('encoder/clip/weights.js');
const { ClipTokenizer } = await dist('tokenizer/index.js');
const { writeSafetensors } = await dist('io/safetensors.js');
phase('module loading (CLI + encoder)');
const src = enc.resolveModelDir(dir).parts[0];
const config = enc.readClipConfig(path.join(src.encoderDir, 'config.json'), src.architecture);
const tokenizer = ClipTokenizer.fromDir(src.tokenizerDir);
phase('config + tokenizer');
const ckpt = openTextEncoderWeights(src.encoderDir);
md.modelIdentity(md.textModelFiles(path.join(src.encoderDir, 'config.json'), ckpt, src.tokenizerDir));
phase('identity hash (cached digest)');
const encoder = await ClipTextEncoder.create(config, new enc.ClipWeightReader(ckpt, config, src.encoderDir));
ckpt.close();
phase('weights: finiteness check, embeddings');
const prompts = Array.from({ length: 64 }, (_, i) => `a photo of a person number ${i} standing in a field of flowers`);
const batchOf = (texts) => {
  const b = tokenizer.batch(texts);
  return { ids: b.ids, n: b.n, t: 77 };
};
await encoder.encode(batchOf(prompts.slice(0, 1)));
phase('first 1-prompt encode (builds the session)');
await encoder.encode(batchOf(prompts.slice(0, 1)));
phase('1-prompt forward (session built)');
const outs = [];
for (let i = 0; i < 64; i += 32) outs.push(await encoder.encode(batchOf(prompts.slice(i, i + 32))));
phase('64 prompts, batch 32');
const data = new Float32Array(64 * 77 * config.hiddenSize);
outs.forEach((o, i) => data.set(o.lastHiddenState, i * o.lastHiddenState.length));
writeSafetensors(path.join(os.tmpdir(), `itd-profile-${process.pid}.safetensors`), { prompt_embeds: { dtype: 'F32', shape: [64, 77, config.hiddenSize], data } });
phase('write output (64 prompts)');
await encoder.release();
const rss = process.resourceUsage().maxRSS / 1024;
console.log(`bench:encode-profile — ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores, node ${process.version} — ${new Date().toISOString()} — load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(`model ${dir}: ${config.architecture} D=${config.hiddenSize}, ${config.numLayers} layers; ITD_THREADS=${process.env['ITD_THREADS'] ?? '(all cores)'}`);
for (const [label, ms, cpu] of rows) console.log(`${label.padEnd(44)} wall ${ms.toFixed(0).padStart(6)} ms   CPU ${cpu.toFixed(0).padStart(6)} ms`);
console.log(`peak RSS ${rss.toFixed(0)} MiB`);
