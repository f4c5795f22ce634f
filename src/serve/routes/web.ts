/** The playground at / with its bundled assets under /assets/. */
import type { FastifyInstance } from 'fastify';
import { webAssets } from '../../web/build.js';

/** Same-origin only; JS sets styles through the CSSOM, which style-src does not restrict. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export async function webRoutes(app: FastifyInstance): Promise<void> {
  for (const [url, asset] of await webAssets()) {
    app.get(url, { config: { public: true }, schema: { hide: true } }, async (_req, reply) =>
      reply.type(asset.type).header('cache-control', 'no-cache').header('content-security-policy', CSP).send(asset.body));
  }
}
