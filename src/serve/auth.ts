/** Bearer-token auth and the loopback rule: binding beyond loopback requires a token. */
import crypto from 'node:crypto';
import net from 'node:net';

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
  if (token.length < 16) throw new Error(`${source}: the token must be at least 16 characters (got ${token.length})`);
  if (/\s/.test(token)) throw new Error(`${source}: the token must not contain whitespace`);
  return token;
}
