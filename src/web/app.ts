/**
 * The playground: classify a prompt (tokens coloured by their share of the gate score, each
 * token's top SAE features), manage the eraser's concepts, explore latents, compare images.
 * Plain DOM; every server string goes in through textContent, never as HTML.
 */
import type { Calibration } from '../select/eraser-file.js'; // a type only: nothing of the library is bundled

interface Latent { latent: number; value: number; concepts: string[] }
interface TokenInfo { position: number; token: string; share: number; score: number; latents: Latent[] }
interface ClassifyResult {
  prompt: string; score: number; threshold: number | null; erased: boolean; concepts: string[];
  conceptScores: Record<string, number>; features?: Latent[]; tokens?: TokenInfo[];
}
interface Concept { name: string; prompts: string[]; features: number; latents: number[] }
interface Concepts { eraser: string; threshold: number | null; calibration: Calibration | null; concepts: Concept[] }
interface Info { model: string; eraser: string; layer: number; saeLatents: number; explain: boolean; generate: boolean; auth: boolean }
interface Example { value: number; token: string; prompt: string }

const TOKEN_KEY = 'itd-token';

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el as T;
}

/** Element with text children only (no HTML parsing of server data). */
function h(tag: string, props: { className?: string; title?: string; testid?: string } = {}, ...children: (Node | string)[]): HTMLElement {
  const el = document.createElement(tag);
  if (props.className) el.className = props.className;
  if (props.title) el.title = props.title;
  if (props.testid) el.dataset['testid'] = props.testid;
  el.append(...children);
  return el;
}

function say(text: string, error = false): void {
  const m = byId('message');
  m.textContent = text;
  m.className = error ? 'error' : '';
  m.hidden = text === '';
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const data = (await res.json().catch(() => ({}))) as T & { error?: { message: string } };
  if (res.status === 401) byId('token-box').hidden = false;
  if (!res.ok) throw new Error(data.error?.message ?? `${method} ${path}: HTTP ${res.status}`);
  return data;
}

/** Runs an action, showing its failure instead of throwing. */
function guarded(fn: () => Promise<void>): () => void {
  return () => void fn().then(() => say(''), (e: Error) => say(e.message, true));
}

function onSubmit(id: string, fn: () => Promise<void>): void {
  const run = guarded(fn);
  byId<HTMLFormElement>(id).addEventListener('submit', (ev) => {
    ev.preventDefault();
    run();
  });
}

const fmt = (x: number | null) => (x === null ? 'none' : x === 0 ? '0' : x.toExponential(3));

function latentTable(latents: Latent[]): HTMLElement {
  const rows = latents.map((l) =>
    h('tr', {}, h('td', {}, String(l.latent)), h('td', { className: 'num' }, l.value.toFixed(3)),
      h('td', {}, ...l.concepts.map((c) => h('span', { className: 'chip hit' }, c)))));
  return h('table', {}, h('tr', {}, h('th', {}, 'latent'), h('th', { className: 'num' }, 'activation'), h('th', {}, 'erased by')), ...rows);
}

function showDecision(r: ClassifyResult): void {
  const box = byId('decision');
  const meter = h('div', { className: 'meter', title: 'score relative to the threshold (mark)' }, h('div', { className: 'fill' }), h('div', { className: 'mark' }));
  const fill = meter.firstElementChild as HTMLElement;
  fill.style.width = `${r.threshold ? Math.min(100, (50 * r.score) / r.threshold) : 0}%`;
  box.replaceChildren(h('div', { className: 'decision' },
    h('span', { className: `badge ${r.erased ? 'erase' : 'pass'}`, testid: 'verdict' }, r.erased ? 'ERASE' : 'PASS'),
    h('span', {}, `score ${fmt(r.score)} vs threshold ${fmt(r.threshold)}`), meter),
  h('div', { testid: 'fired' }, r.concepts.length ? 'concepts fired: ' : 'no concept fired', ...r.concepts.map((c) => h('span', { className: 'chip hit' }, c))));
  box.hidden = false;
}

function showTokens(tokens: TokenInfo[]): void {
  const max = Math.max(1e-12, ...tokens.map((t) => t.share));
  const detail = byId('token-detail');
  detail.replaceChildren();
  byId('tokens').replaceChildren(...tokens.map((t) => {
    const span = h('span', { className: 'token', title: `${(100 * t.share).toFixed(1)}% of the score`, testid: 'token' }, t.token);
    span.style.background = `rgba(220, 38, 38, ${(0.75 * t.share) / max})`;
    const select = () => {
      document.querySelectorAll('.token.selected').forEach((e) => e.classList.remove('selected'));
      span.classList.add('selected');
      detail.replaceChildren(h('h3', {}, `“${t.token}” (position ${t.position}): ${(100 * t.share).toFixed(1)}% of the score`), latentTable(t.latents));
    };
    span.addEventListener('click', select);
    span.addEventListener('mouseenter', select);
    return span;
  }));
}

async function classify(): Promise<void> {
  const prompt = byId<HTMLInputElement>('prompt').value.trim();
  if (!prompt) return;
  const { results } = await api<{ results: ClassifyResult[] }>('POST', '/v1/classify', { prompts: [prompt], top: 8 });
  showDecision(results[0]!);
  showTokens(results[0]!.tokens ?? []);
}

async function loadConcepts(): Promise<void> {
  const c = await api<Concepts>('GET', '/v1/concepts');
  const cal = c.calibration;
  byId('calibration').textContent = `eraser ${c.eraser}, threshold ${fmt(c.threshold)}` +
    (cal ? ` (${cal.method} ${cal.target}: AUROC ${cal.auroc.toFixed(3)}, TPR ${cal.tpr.toFixed(3)}, FPR ${cal.fpr.toFixed(3)}${cal.stale ? '; stale: concepts changed since, recalibrate' : ''})` : ' (uncalibrated)');
  byId('concepts').replaceChildren(...c.concepts.map((k) => {
    const remove = h('button', { className: 'link', title: `remove ${k.name}`, testid: `remove-${k.name}` }, '✕');
    remove.addEventListener('click', guarded(async () => {
      await api('DELETE', `/v1/concepts/${encodeURIComponent(k.name)}`);
      await refresh();
    }));
    return h('li', { testid: 'concept' }, h('span', {}, h('strong', {}, k.name), ` · ${k.features} features · ${k.prompts.length} prompts`), remove);
  }));
}

/** After an edit: concepts, and the prompt's decision under the new eraser. */
async function refresh(): Promise<void> {
  await loadConcepts();
  if (byId<HTMLInputElement>('prompt').value.trim()) await classify();
}

async function addConcept(): Promise<void> {
  const name = byId<HTMLInputElement>('concept-name').value.trim();
  const prompts = byId<HTMLTextAreaElement>('concept-prompts').value.split('\n').map((p) => p.trim()).filter(Boolean);
  say(`adding ${name}…`);
  await api('POST', '/v1/concepts', { name, ...(prompts.length ? { prompts } : {}) });
  byId<HTMLInputElement>('concept-name').value = '';
  byId<HTMLTextAreaElement>('concept-prompts').value = '';
  await refresh();
}

async function recalibrate(): Promise<void> {
  const by = byId<HTMLSelectElement>('calibrate-by').value;
  say('calibrating…');
  await api('POST', '/v1/calibrate', { [by]: Number(byId<HTMLInputElement>('calibrate-value').value) });
  await refresh();
}

async function explain(): Promise<void> {
  const latent = byId<HTMLInputElement>('latent').value;
  const r = await api<{ concepts: string[]; examples: Example[] }>('GET', `/v1/explain?latent=${encodeURIComponent(latent)}&top=20`);
  byId('explain').replaceChildren(
    h('p', {}, `latent ${latent}`, ...(r.concepts.length ? [' · erased by ', ...r.concepts.map((c) => h('span', { className: 'chip hit' }, c))] : [])),
    h('table', {}, h('tr', {}, h('th', { className: 'num' }, 'activation'), h('th', {}, 'token'), h('th', {}, 'prompt')),
      ...r.examples.map((e) => h('tr', {}, h('td', { className: 'num' }, e.value.toFixed(3)), h('td', {}, h('strong', {}, e.token)), h('td', {}, e.prompt)))));
}

async function generate(): Promise<void> {
  const prompt = byId<HTMLInputElement>('prompt').value.trim();
  if (!prompt) throw new Error('type a prompt first');
  say('generating…');
  const { results } = await api<{ results: { erased: string; original?: string }[] }>('POST', '/v1/generate',
    { prompts: [prompt], compare: true, seed: Number(byId<HTMLInputElement>('seed').value) });
  const figure = (label: string, b64: string) => {
    const img = document.createElement('img');
    img.src = `data:image/png;base64,${b64}`;
    img.alt = label;
    return h('figure', {}, img, h('figcaption', { className: 'muted small' }, label));
  };
  byId('images').replaceChildren(figure('original', results[0]!.original ?? ''), figure('erased', results[0]!.erased));
}

async function start(): Promise<void> {
  const tokenInput = byId<HTMLInputElement>('token');
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  tokenInput.addEventListener('change', guarded(async () => {
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    await connect();
  }));
  onSubmit('prompt-form', classify);
  onSubmit('concept-form', addConcept);
  onSubmit('calibrate-form', recalibrate);
  onSubmit('explain-form', explain);
  onSubmit('generate-form', generate);
  await connect();
}

async function connect(): Promise<void> {
  const info = await api<Info>('GET', '/v1/info');
  byId('info').textContent = `model ${info.model} · layer ${info.layer} · ${info.saeLatents} SAE latents`;
  byId('explorer-card').hidden = !info.explain;
  byId('images-card').hidden = !info.generate;
  await loadConcepts();
  document.body.dataset['ready'] = 'true';
}

guarded(start)();
