// Every error vrift raises on purpose is a VriftError: a stable code
// (ERR_VRIFT_<AREA>_<COND>), a one-line message naming the thing, and a
// hint naming the fix. The CLI prints those as one line and no stack;
// anything else is a bug and keeps its stack.
import { constants as osConstants } from 'node:os';
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export class VriftError extends Error {
  /** One of ERROR_CODES (src/lib/error-codes.ts); docs/errors.md lists them. */
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  /** Exit status the CLI uses for this error (1 = a miss a script may branch on, 2 = usage/input). */
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; cause?: unknown; exitCode?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'VriftError';
    this.code = code;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 2;
  }
}

/** True for a VriftError (checked by name, not instanceof, so copies across module instances agree). */
export function isVriftError(e: unknown): e is VriftError {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'VriftError';
}

/** True when `e` is a VriftError with this code. */
export function hasCode(e: unknown, code: ErrorCode): boolean {
  return isVriftError(e) && e.code === code;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** ENOENT for 2, and so on (native helpers report bare errno numbers). */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** A Node-style system error for an errno a native helper reported (fsError understands it). */
export function errnoError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`${code}: ${syscall} ${path}`), { code, errno, syscall, path });
}

/** The errno code of a Node system error (ENOENT, ENOSPC …), if any. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('E') ? code : undefined;
}

/**
 * Turns a system error met while touching `path` into a VriftError whose
 * message a user can act on. Unknown errnos keep the system message.
 */
export function fsError(e: unknown, path: string, doing: string): VriftError {
  const errno = errnoOf(e);
  switch (errno) {
    case 'ENOENT':
      return new VriftError('ERR_VRIFT_FS_NOT_FOUND', `${path}: no such file or directory`, {
        hint: 'check the path',
        cause: e,
      });
    case 'EACCES':
    case 'EPERM':
      return new VriftError('ERR_VRIFT_FS_ACCESS', `${path}: permission denied while ${doing}`, {
        hint: 'check its owner and mode',
        cause: e,
      });
    case 'ENOSPC':
    case 'EDQUOT':
      return new VriftError('ERR_VRIFT_FS_FULL', `${path}: disk full while ${doing}`, {
        hint: 'free space on that filesystem or run `vrift gc --max-size SIZE`',
        cause: e,
      });
    case 'ENOTDIR':
      return new VriftError('ERR_VRIFT_FS_NOT_DIR', `${path}: a path component is not a directory`, {
        hint: 'check the path',
        cause: e,
      });
    case 'ELOOP':
      return new VriftError('ERR_VRIFT_FS_LOOP', `${path}: too many levels of symbolic links`, {
        hint: 'break the symlink loop',
        cause: e,
      });
    case 'EROFS':
      return new VriftError('ERR_VRIFT_FS_READONLY', `${path}: read-only filesystem`, {
        hint: 'choose a writable location',
        cause: e,
      });
    default: {
      const msg = (e as Error | undefined)?.message ?? String(e);
      return new VriftError('ERR_VRIFT_FS_IO', `${path}: ${doing} failed: ${msg}`, { cause: e });
    }
  }
}
