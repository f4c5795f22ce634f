/**
 * Bearer-token auth, the loopback rule (binding beyond loopback requires a token) and the
 * DNS-rebinding guard: without a token, loopback is the only defence, and a page on another
 * origin can point its own host name at 127.0.0.1. The browser then sends that name as Host, so a
 * tokenless server answers only Host names that are loopback or allow-listed, and state-changing
 * requests carrying an Origin only from that same origin (or the configured CORS origin).
 */
import crypto from 'node:crypto';
import net from 'node:net';
import { ItdError } from '../errors.js';

/**
 * Constant-time token check: both sides are hashed to equal-length digests first, so neither the
 * content nor the length of the expected token leaks through timing.
 */
export function tokenMatches(given: string, expected: string): boolean {
  const a = crypto.createHash('sha256').update(given, 'utf8').digest();
  const b = crypto.createHash('sha256').update(expected, 'utf8').digest();
  return crypto.timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header ?? '');
  return m?.[1];
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const v = net.isIP(host);
  if (v === 4) return host.startsWith('127.');
  if (v === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** Reads a token file: its first line, trimmed; refuses empty or short tokens. */
export function parseToken(text: string, source: string): string {
  const token = text.split(/\r?\n/, 1)[0]!.trim();
  if (token.length < 16) throw new ItdError('config', `${source}: the token must be at least 16 characters (got ${token.length})`, { file: source, field: 'token' });
  if (/\s/.test(token)) throw new ItdError('config', `${source}: the token must not contain whitespace`, { file: source, field: 'token' });
  return token;
}

/** The lowercased host name of a Host header ("127.0.0.1:8080", "[::1]:8080", "Localhost"), without port or brackets. */
export function hostName(header: string | undefined): string | undefined {
  const m = /^(?:\[([0-9a-f:.]+)\]|([^\s:[\]/@]+))(?::\d{1,5})?$/i.exec(header ?? '');
  return m ? (m[1] ?? m[2])!.toLowerCase() : undefined;
}

/** A Host header naming loopback or one of `allowed` (host names, lowercase). */
export function hostAllowed(header: string | undefined, allowed: ReadonlySet<string>): boolean {
  const name = hostName(header);
  return name !== undefined && (isLoopback(name) || allowed.has(name));
}

/** An Origin header that is this server's own origin (same host and port as the Host header) or the CORS origin. */
export function originAllowed(origin: string, host: string | undefined, cors: string | undefined): boolean {
  if (cors !== undefined && origin === cors) return true;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false; // "null" (sandboxed frames, file: pages) and junk
  }
}
