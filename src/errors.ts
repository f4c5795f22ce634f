/**
 * Typed errors of the itd library. Every error the library throws on bad input or state is an
 * ItdError carrying a stable `code`, and where it applies the `file` and `field` at fault, so the
 * CLI maps it to an exit code and the server to an HTTP status without parsing messages.
 */

/** Stable error codes; the CLI's exit code and the server's HTTP status are derived from them. */
export type ItdErrorCode =
  | 'usage' // a bad argument or option value (CLI exit 2, HTTP 400)
  | 'not_found' // a file, directory, concept or latent that does not exist (exit 1, HTTP 404)
  | 'format' // a file whose bytes or structure are not what its format requires (exit 1, HTTP 422)
  | 'config' // a config/JSON file with a missing or mistyped field (exit 1, HTTP 422)
  | 'mismatch' // files that do not belong together (SAE vs model, eraser vs SAE) (exit 1, HTTP 409)
  | 'numeric' // NaN/Inf or another numeric impossibility in data (exit 1, HTTP 422)
  | 'quality' // a result too poor to use (untrained SAE, degenerate threshold) (exit 1, HTTP 422)
  | 'unsupported' // a valid input this version does not handle (exit 1, HTTP 501)
  | 'io' // the operating system refused a read or write (exit 1, HTTP 500)
  | 'internal'; // a broken invariant: a bug in itd (exit 70, HTTP 500)

export interface ItdErrorDetails {
  /** The file (or directory) at fault. */
  file?: string;
  /** The field, tensor, flag or key at fault within it. */
  field?: string;
  /** What to do about it, shown after the message. */
  hint?: string;
  cause?: unknown;
}

export class ItdError extends Error {
  override readonly name = 'ItdError';
  readonly file: string | undefined;
  readonly field: string | undefined;
  readonly hint: string | undefined;

  constructor(readonly code: ItdErrorCode, message: string, details: ItdErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.file = details.file;
    this.field = details.field;
    this.hint = details.hint;
  }

  /** The message with its hint, as the CLI prints it. */
  describe(): string {
    return this.hint ? `${this.message}\n  hint: ${this.hint}` : this.message;
  }
}

/** Shorthands for the common kinds: `formatError(file, 'header.dtype', 'expected ...')`. */
export const formatError = (file: string, field: string | undefined, message: string, hint?: string): ItdError =>
  new ItdError('format', `${file}${field ? `: ${field}` : ''}: ${message}`, { file, field, hint });

export const configError = (file: string, field: string, message: string, hint?: string): ItdError =>
  new ItdError('config', `${file}: field '${field}' ${message}`, { file, field, hint });

/** CLI exit status for an error code. */
export function exitCodeOf(code: ItdErrorCode): number {
  return code === 'usage' ? 2 : code === 'internal' ? 70 : 1;
}

/** HTTP status for an error code. */
export function httpStatusOf(code: ItdErrorCode): number {
  switch (code) {
    case 'usage': return 400;
    case 'not_found': return 404;
    case 'mismatch': return 409;
    case 'format': case 'config': case 'numeric': case 'quality': return 422;
    case 'unsupported': return 501;
    default: return 500;
  }
}
