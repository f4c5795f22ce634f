/**
 * OpenAPI 3.1 document built from the routes' own Fastify schemas (collected with an onRoute hook),
 * so the description cannot drift from what the server validates. 3.1 because its schema dialect is
 * JSON Schema 2020-12, which TypeBox's `const`, `type: 'null'` and numeric exclusive bounds are.
 * The file formats a client exchanges with itd are components, from their one TypeBox schema.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import { ActivationManifestSchema } from '../collect/manifest.js';
import { SaeConfigSchema } from '../sae/cfg.js';
import { CalibrationSchema, EraserSchema } from '../select/eraser-file.js';
import { EraserSetSchema } from '../erase/eraser-set.js';
import { TrainConfigSchema } from '../train/config.js';

/** components.schemas: each file format, as the loaders validate it. */
const FILE_FORMATS = { Eraser: EraserSchema, EraserSet: EraserSetSchema, Calibration: CalibrationSchema, ActivationManifest: ActivationManifestSchema, SaeConfig: SaeConfigSchema, TrainConfig: TrainConfigSchema };

/** A reference to one of FILE_FORMATS, for route docs. */
export const formatRef = (name: keyof typeof FILE_FORMATS) => ({ $ref: `#/components/schemas/${name}` });

/** Documentation fields on route schemas (Fastify ignores them; @fastify/swagger uses the same names). */
interface DocFields {
  summary?: string;
  description?: string;
  tags?: string[];
  /** Media types of the 200 response (default application/json). */
  produces?: string[];
  /** Leave the route out of the document (assets). */
  hide?: boolean;
  /** Schema of the JSON 200 response, documentation only (Fastify serializes without it). */
  returns?: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifySchema extends DocFields {}
}

interface DocSchema extends DocFields {
  body?: JsonSchema;
  querystring?: JsonSchema;
  params?: JsonSchema;
}

type JsonSchema = { properties?: Record<string, JsonSchema & { description?: string }>; required?: string[] } & Record<string, unknown>;

export interface DocRoute {
  method: string;
  url: string;
  schema: DocSchema;
}

/** Starts collecting routes; call before registering them. */
export function collectRoutes(app: FastifyInstance): DocRoute[] {
  const routes: DocRoute[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const schema = (r.schema ?? {}) as DocSchema;
    for (const method of [r.method].flat()) {
      if (method !== 'HEAD' && method !== 'OPTIONS' && !schema.hide) routes.push({ method: method.toLowerCase(), url: r.url, schema });
    }
  });
  return routes;
}

function parameters(where: 'query' | 'path', s: JsonSchema | undefined) {
  return Object.entries(s?.properties ?? {}).map(([name, schema]) => ({
    name, in: where, required: where === 'path' || (s?.required ?? []).includes(name), schema, ...(schema.description ? { description: schema.description } : {}),
  }));
}

export function openApiDocument(routes: DocRoute[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const { method, url, schema: s } of routes) {
    const path = url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const content = Object.fromEntries((s.produces ?? ['application/json']).map((t) => [t, s.returns ? { schema: s.returns } : {}]));
    paths[path] ??= {};
    paths[path]![method] = {
      ...(s.summary ? { summary: s.summary } : {}),
      ...(s.description ? { description: s.description } : {}),
      ...(s.tags ? { tags: s.tags } : {}),
      parameters: [...parameters('path', s.params), ...parameters('query', s.querystring)],
      ...(s.body ? { requestBody: { required: true, content: { 'application/json': { schema: s.body } } } } : {}),
      responses: { 200: { description: 'OK', content }, default: { $ref: '#/components/responses/Error' } },
    };
  }
  return {
    openapi: '3.1.0',
    info,
    paths,
    security: [{ bearer: [] }, {}],
    components: {
      schemas: FILE_FORMATS,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'required when the server was started with a token (always when it binds beyond loopback)' } },
      responses: {
        Error: {
          description: 'error (4xx client error; 429/503 carry Retry-After)',
          content: { 'application/json': { schema: { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] } } } } },
        },
      },
    },
  };
}
