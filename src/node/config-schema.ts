// Building blocks of the config schema (src/node/config.ts): what a
// section is, and field types that accept both JSON values and the
// strings environment variables carry, each with a message that says
// what is wrong and shows a good value.
import { accessSync, constants as C, statSync } from 'node:fs';
import { z } from 'zod';
import { parseSize } from './gc.js';

/**
 * One section of the config: a key in config.json, its schema, and the
 * environment variables that set its keys. A tier's file owns its
 * section; the daemon and the cluster add theirs the same way.
 */
export interface ConfigSection<T = unknown> {
  /** Key in config.json, e.g. "redis". */
  key: string;
  /** Validates the section (undefined when neither the file nor the environment sets it). */
  schema: z.ZodType<T>;
  /** Environment variable → key in the section (dots for nested keys): { VRIFT_REDIS_URL: 'url' }. */
  env?: Record<string, string>;
}

type Check<T> = (v: unknown) => { ok: T } | { error: string };

/** A field from a check function: undefined input reaches the check (so it can say "required"). */
export function field<T>(check: Check<T>): z.ZodType<T, unknown> {
  return z.unknown().transform((v, ctx) => {
    const r = check(v);
    if ('error' in r) {
      ctx.addIssue({ code: 'custom', message: r.error });
      return z.NEVER;
    }
    return r.ok;
  }) as unknown as z.ZodType<T, unknown>;
}

const REQUIRED = (example: string) => ({ error: `required (e.g. ${example})` });

export function text(opts: { example: string; check?: (s: string) => string | undefined }): z.ZodType<string, unknown> {
  return field<string>((v) => {
    if (v === undefined || v === '') return REQUIRED(opts.example);
    if (typeof v !== 'string') return { error: `not a string (e.g. ${opts.example})` };
    const why = opts.check?.(v);
    return why ? { error: why } : { ok: v };
  });
}

export function url(opts: { example: string; protocols: string[] }): z.ZodType<string, unknown> {
  return field<string>((v) => {
    if (v === undefined || v === '') return REQUIRED(opts.example);
    let u: URL | undefined;
    try {
      u = typeof v === 'string' ? new URL(v) : undefined;
    } catch {
      u = undefined;
    }
    if (!u || !u.host) return { error: `not a URL (e.g. ${opts.example})` };
    if (!opts.protocols.includes(u.protocol)) {
      return { error: `unsupported scheme "${u.protocol}" (use ${opts.protocols.map((p) => `${p}//`).join(' or ')}, e.g. ${opts.example})` };
    }
    return { ok: v as string };
  });
}

export function size(opts: { example: string; min?: number; max?: number }): z.ZodType<number, unknown> {
  return field<number>((v) => {
    let n: number | undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) n = v;
    else if (typeof v === 'string') {
      try {
        n = parseSize(v);
      } catch {
        n = undefined;
      }
    }
    if (n === undefined) return { error: `not a size (e.g. ${opts.example}, or a number of bytes)` };
    if (opts.min !== undefined && n < opts.min) return { error: `${n} bytes is below the minimum of ${opts.min}` };
    if (opts.max !== undefined && n > opts.max) return { error: `${n} bytes is above the maximum of ${opts.max}` };
    return { ok: n };
  });
}

export function int(opts: { example: string; min: number; max: number }): z.ZodType<number, unknown> {
  return field<number>((v) => {
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) return { error: `not a whole number (e.g. ${opts.example})` };
    if (n < opts.min || n > opts.max) return { error: `${n} is out of range (${opts.min}..${opts.max})` };
    return { ok: n };
  });
}

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

export function bool(): z.ZodType<boolean, unknown> {
  return field<boolean>((v) => {
    if (typeof v === 'boolean') return { ok: v };
    if (typeof v === 'string' && TRUE.has(v.toLowerCase())) return { ok: true };
    if (typeof v === 'string' && FALSE.has(v.toLowerCase())) return { ok: false };
    return { error: 'not a boolean (use true or false)' };
  });
}

/** A list, from a JSON array or a comma-separated string. */
export function list(opts: { example: string; allowed?: readonly string[] }): z.ZodType<string[], unknown> {
  return field<string[]>((v) => {
    const items = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
    if (!Array.isArray(items) || !items.every((s) => typeof s === 'string')) return { error: `not a list (e.g. ${opts.example})` };
    const bad = opts.allowed ? items.filter((s) => !opts.allowed!.includes(s)) : [];
    if (bad.length > 0) return { error: `unknown ${bad.map((b) => JSON.stringify(b)).join(', ')} (known: ${opts.allowed!.join(', ')})` };
    return { ok: items as string[] };
  });
}

/** A path to a readable file (certificates, keys), checked now rather than at first connect. */
export function file(opts: { example: string }): z.ZodType<string, unknown> {
  return field<string>((v) => {
    if (v === undefined || v === '') return REQUIRED(opts.example);
    if (typeof v !== 'string') return { error: `not a path (e.g. ${opts.example})` };
    try {
      if (!statSync(v).isFile()) return { error: `${v} is not a file` };
      accessSync(v, C.R_OK);
    } catch {
      return { error: `${v}: no such readable file` };
    }
    return { ok: v };
  });
}
