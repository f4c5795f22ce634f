/** Every error leaves as {error: {code, message}} with a 4xx/5xx status; internals never leak. */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { httpStatusOf, ItdError } from '../errors.js';
import { DeadlineError, QueueFullError } from './batcher.js';

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

/** 503 with Retry-After: not ready, shutting down, or timed out in the queue. */
export function unavailable(code: string, message: string): ApiError {
  return new ApiError(503, code, message, { 'retry-after': '1' });
}

const FASTIFY_CODES: Record<string, [number, string, string?]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'body_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'send the body as Content-Type: application/json'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'bad_content_length'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'empty_body', 'the JSON body is empty'],
  FST_ERR_BAD_URL: [400, 'bad_url'],
  FST_ERR_MAX_PARAM_LENGTH: [414, 'url_too_long'],
};

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof QueueFullError) return new ApiError(429, 'queue_full', `${err.message}; retry later`, { 'retry-after': String(err.retryAfterS) });
  if (err instanceof DeadlineError) return err.queued ? unavailable('timeout', `${err.message}; retry later`) : new ApiError(504, 'timeout', err.message);
  if (err instanceof ItdError && err.code !== 'internal' && err.code !== 'io') return new ApiError(httpStatusOf(err.code), err.code, err.describe());
  const e = err as Partial<FastifyError>;
  if (e.validation) return new ApiError(400, 'invalid_request', e.message ?? 'invalid request');
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return new ApiError(known[0], known[1], known[2] ?? e.message ?? known[1]);
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new ApiError(e.statusCode, 'bad_request', e.message ?? 'bad request');
  return new ApiError(500, 'internal', 'internal server error');
}

export function sendError(err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const e = toApiError(err);
  if (e.status >= 500 && e.status !== 503 && e.status !== 504) req.log.error({ err }, 'request failed');
  return reply.code(e.status).headers(e.headers).type('application/json; charset=utf-8').send({ error: { code: e.code, message: e.message } });
}

/** Node's HTTP parser errors (no request exists yet): status, code, message. */
const PARSER_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large', 'the request headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'the request was not received in time'],
  HPE_INVALID_CONTENT_LENGTH: [400, 'bad_content_length', 'the Content-Length header is not a valid length'],
  HPE_UNEXPECTED_CONTENT_LENGTH: [400, 'bad_content_length', 'the request has more than one Content-Length header'],
  HPE_INVALID_TRANSFER_ENCODING: [400, 'bad_transfer_encoding', 'Transfer-Encoding is invalid or combined with Content-Length'],
};

/**
 * Errors raised below the routes, while Node parses the request (oversized headers, a bad
 * Content-Length, a malformed request line): answered in the same {error: {code, message}} format,
 * then the connection is closed (its framing can no longer be trusted).
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] = PARSER_ERRORS[err.code ?? ''] ?? [400, 'bad_request', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code, message } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}
