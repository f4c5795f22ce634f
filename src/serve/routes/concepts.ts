/**
 * Editing the active eraser: list/add/remove concepts and recalibrate. Each edit runs as an
 * exclusive batcher task (no encode runs beside it), is saved atomically to the eraser file fixed
 * at start, then swapped in with ConceptEraser.update. Concept names are data only.
 */
import type { FastifyInstance } from 'fastify';
import { calibrateEraser } from '../../classify/calibrate-eraser.js';
import { conceptNameProblem, EraserSchema, saveEraser, type ConceptEntry, type EraserSpec } from '../../select/eraser-file.js';
import { formatRef } from '../openapi.js';
import { addConcept, assertNotEmpty, expandConcept, removeConcept } from '../../select/select.js';
import type { ServeContext } from '../context.js';
import { ApiError } from '../errors.js';
import { checkCount, promptList } from './common.js';

const NAME = { type: 'string', minLength: 1, maxLength: 100, pattern: '^(?=.*\\S)[^\\u0000-\\u001f\\u007f]+$', description: 'concept name (printable, 1..100 characters)' } as const;

interface CalibrateBody {
  target?: string[];
  retain?: string[];
  recall?: number;
  fpr?: number;
  force?: boolean;
}

/** Schemas cannot see lone surrogates (JSON and the pattern both accept them): 400 before any work. */
function checkName(name: string): void {
  const problem = conceptNameProblem(name);
  if (problem) throw new ApiError(400, 'invalid_name', `concept name ${problem}`);
}

async function commit(ctx: ServeContext, spec: EraserSpec): Promise<void> {
  saveEraser(ctx.eraserPath, spec);
  await ctx.eraser().update(spec);
  ctx.encodeCache?.clear(); // entries of the old eraser id can no longer match: free them
}

function summary(c: ConceptEntry) {
  return { name: c.name, prompts: c.prompts, features: c.features.length, latents: c.features.slice(0, 16).map((f) => f.latent), keptForRetain: c.removedByRetain.length };
}

/** What overview returns: the eraser file's own fields (EraserSchema), concepts summarised. */
const OVERVIEW = {
  type: 'object',
  properties: {
    eraser: { type: 'string', description: 'eraser id (content hash of the settings that change behaviour)' },
    ...pick(EraserSchema.properties, ['layer', 'mode', 'scale', 'threshold', 'templates']),
    calibration: { anyOf: [formatRef('Calibration'), { type: 'null' }] },
    concepts: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, prompts: { type: 'array', items: { type: 'string' } }, features: { type: 'integer' }, latents: { type: 'array', items: { type: 'integer' } }, keptForRetain: { type: 'integer' } } } },
  },
};

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as Pick<T, K>;
}

function overview(ctx: ServeContext) {
  const e = ctx.eraser();
  const s = e.spec;
  return { eraser: e.id, layer: s.layer, mode: s.mode, scale: s.scale, threshold: s.threshold, calibration: s.calibration, templates: s.templates, concepts: s.concepts.map(summary) };
}

export function conceptRoutes(app: FastifyInstance, ctx: ServeContext): void {
  const { maxPrompts, maxCalibratePrompts } = ctx.limits;

  app.get('/v1/concepts', { schema: { summary: "the active eraser's concepts, threshold and calibration", tags: ['concepts'], returns: OVERVIEW } }, async () => overview(ctx));

  app.post<{ Body: { name: string; prompts?: string[] } }>('/v1/concepts', {
    schema: {
      summary: 'add (or replace) a concept; its features are selected against the stored retain set',
      description: "Without prompts the name is expanded through the eraser's templates. 201 when added, 200 when replaced; " +
        '422 concept_empty when retain prompts use all of its features. The calibration is marked stale.',
      tags: ['concepts'],
      body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: NAME, prompts: promptList(maxPrompts) } },
    },
  }, async (req, reply) => {
    const { name, prompts } = req.body;
    checkName(name);
    if (prompts) checkCount(prompts, maxPrompts);
    const out = await ctx.batcher.exclusive(async () => {
      const { spec, model, sae } = ctx.eraser();
      const next = await addConcept(spec, model, sae, name, prompts ?? expandConcept(name, spec.templates), true);
      const entry = next.concepts.find((c) => c.name === name)!;
      try {
        assertNotEmpty(entry, spec.retain.prompts);
      } catch (e) {
        throw new ApiError(422, 'concept_empty', (e as Error).message);
      }
      await commit(ctx, next);
      return { replaced: spec.concepts.some((c) => c.name === name), concept: summary(entry) };
    });
    return reply.code(out.replaced ? 200 : 201).send({ ...out, eraser: ctx.eraser().id });
  });

  app.delete<{ Params: { name: string } }>('/v1/concepts/:name', {
    schema: { summary: 'remove a concept', tags: ['concepts'], params: { type: 'object', properties: { name: { type: 'string', maxLength: 100 } } } },
  }, async (req) => {
    const { name } = req.params;
    checkName(name);
    await ctx.batcher.exclusive(async () => {
      const { spec } = ctx.eraser();
      if (!spec.concepts.some((c) => c.name === name)) {
        throw new ApiError(404, 'unknown_concept', `the eraser has no concept ${JSON.stringify(name)} (it has: ${spec.concepts.map((c) => JSON.stringify(c.name)).join(', ') || 'none'})`);
      }
      await commit(ctx, removeConcept(spec, name));
    });
    return { removed: name, eraser: ctx.eraser().id, concepts: ctx.eraser().spec.concepts.map((c) => c.name) };
  });

  app.post<{ Body: CalibrateBody }>('/v1/calibrate', {
    schema: {
      summary: 'set the erase threshold from target vs retain scores',
      description: "Defaults: the concepts' prompts as targets, the eraser's retain prompts as the others, recall 1.0 (as the official code). " +
        '422 cannot_calibrate for degenerate input or a threshold that erases every other prompt, unless force.',
      tags: ['concepts'],
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          target: promptList(maxCalibratePrompts, 'target prompts'),
          retain: promptList(maxCalibratePrompts, 'non-target prompts'),
          recall: { type: 'number', exclusiveMinimum: 0, maximum: 1, description: 'keep at least this fraction of targets above the threshold' },
          fpr: { type: 'number', minimum: 0, exclusiveMaximum: 1, description: 'or: let at most this fraction of the others through' },
          force: { type: 'boolean', description: 'accept degenerate input or results (fewer than 2 prompts a side, a threshold erasing every other prompt)' },
        },
      },
    },
  }, async (req) => {
    const b = req.body ?? {};
    if (b.recall !== undefined && b.fpr !== undefined) throw new ApiError(400, 'invalid_request', 'give recall or fpr, not both');
    for (const list of [b.target, b.retain]) if (list) checkCount(list, maxCalibratePrompts);
    const want: { recall: number } | { fpr: number } = b.fpr !== undefined ? { fpr: b.fpr } : { recall: b.recall ?? 1 };
    await ctx.batcher.exclusive(async () => {
      let spec;
      try {
        ({ spec } = await calibrateEraser(ctx.eraser(), want, { ...(b.target ? { target: b.target } : {}), ...(b.retain ? { other: b.retain } : {}), force: b.force === true }));
      } catch (e) {
        throw new ApiError(422, 'cannot_calibrate', (e as Error).message);
      }
      await commit(ctx, spec);
    });
    return overview(ctx);
  });
}
