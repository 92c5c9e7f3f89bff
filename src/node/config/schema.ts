// Building blocks of the config schema (src/node/config/config.ts): what a
// section is, and field types that accept both JSON values and the
// strings environment variables carry, each with a message that says
// what is wrong and shows a good value.
//
// Hand-written rather than a schema library: every CI command validates
// the whole config at start, and importing one cost ~0.1 s of CPU there.
import { accessSync, constants as C, statSync } from 'node:fs';
import { parseSize } from '../../lib/units.js';

/** A mistake in a section: the key it concerns ([] for the section as a whole) and what is wrong. */
export interface Issue {
  path: string[];
  message: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/** Validates (and converts) the raw value of a section: undefined when neither the file nor the environment sets it. */
export interface SectionSchema<T> {
  parse(raw: unknown): ParseResult<T>;
  /** The keys the section knows, for "unknown key" messages. */
  readonly keys: readonly string[];
  /** What each key becomes when nothing sets it (keys without a default are absent); docs/configuration.md shows these. */
  readonly defaults?: Readonly<Record<string, unknown>>;
}

/**
 * One section of the config: a key in config.json, its schema, and the
 * environment variables that set its keys. A tier's file owns its
 * section; the daemon and the cluster add theirs the same way.
 */
export interface ConfigSection<T = unknown> {
  /** Key in config.json, e.g. "redis". */
  key: string;
  schema: SectionSchema<T>;
  /** Environment variable → key in the section: { VRIFT_REDIS_URL: 'url' }. */
  env?: Record<string, string>;
}

type Check<T> = (v: unknown) => { ok: T } | { error: string };

/** One key of a section: a check, plus what an absent value becomes. */
export class Field<T> {
  constructor(readonly check: Check<T>) {}

  /** Absent is fine: the value stays undefined. */
  optional(): Field<T | undefined> {
    return new Field<T | undefined>((v) => (v === undefined ? { ok: undefined } : this.check(v)));
  }

  /** Absent means `value`. */
  default(value: T): Field<T> {
    return new Field<T>((v) => (v === undefined ? { ok: value } : this.check(v)));
  }

  /** Converts a valid value. */
  map<U>(fn: (value: T) => U): Field<U> {
    return new Field<U>((v) => {
      const r = this.check(v);
      return 'error' in r ? r : { ok: fn(r.ok) };
    });
  }
}

/** A field from a check function: undefined input reaches the check (so it can say "required"). */
export function field<T>(check: Check<T>): Field<T> {
  return new Field(check);
}

type Shape = Record<string, Field<unknown>>;
type Out<S extends Shape> = { [K in keyof S]: S[K] extends Field<infer U> ? U : never };

export interface ObjectOptions<T> {
  /** An absent section: undefined (a tier nobody configured), or every key's default. */
  absent: 'undefined' | 'defaults';
  /** Rules over several keys, run once every key is valid. */
  rules?: (value: T) => Issue[];
  /** Last step once the rules pass: the final value, or what is wrong. */
  finish?: (value: T) => T | Issue[];
}

/** A section: an object with exactly these keys (an unknown key is a mistake, most likely a typo). */
export function object<S extends Shape, T = Out<S>>(shape: S, opts: ObjectOptions<T>): SectionSchema<T | undefined> {
  const keys = Object.keys(shape);
  const defaults: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(shape)) {
    const r = f.check(undefined);
    if (!('error' in r) && r.ok !== undefined) defaults[k] = r.ok;
  }
  return {
    keys,
    defaults,
    parse(raw: unknown): ParseResult<T | undefined> {
      if (raw === undefined) {
        if (opts.absent === 'undefined') return { ok: true, value: undefined };
        raw = {};
      }
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, issues: [{ path: [], message: 'not an object' }] };
      const issues: Issue[] = [];
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(shape)) {
        const r = f.check((raw as Record<string, unknown>)[k]);
        if ('error' in r) issues.push({ path: [k], message: r.error });
        else if (r.ok !== undefined) out[k] = r.ok;
      }
      for (const k of Object.keys(raw)) if (!(k in shape)) issues.push({ path: [k], message: `unknown key (known: ${keys.join(', ')})` });
      if (issues.length === 0 && opts.rules) issues.push(...opts.rules(out as T));
      if (issues.length > 0) return { ok: false, issues };
      const value = opts.finish ? opts.finish(out as T) : (out as T);
      return Array.isArray(value) ? { ok: false, issues: value as Issue[] } : { ok: true, value };
    },
  };
}

/** A section whose keys all have defaults: never undefined. */
export function defaults<T>(schema: SectionSchema<T | undefined>): SectionSchema<T> {
  return schema as SectionSchema<T>;
}

const REQUIRED = (example: string) => ({ error: `required (e.g. ${example})` });

export function text(opts: { example: string; check?: (s: string) => string | undefined }): Field<string> {
  return field<string>((v) => {
    if (v === undefined || v === '') return REQUIRED(opts.example);
    if (typeof v !== 'string') return { error: `not a string (e.g. ${opts.example})` };
    const why = opts.check?.(v);
    return why ? { error: why } : { ok: v };
  });
}

export function url(opts: { example: string; protocols: string[] }): Field<string> {
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

export function size(opts: { example: string; min?: number; max?: number }): Field<number> {
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

export function int(opts: { example: string; min: number; max: number }): Field<number> {
  return field<number>((v) => {
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) return { error: `not a whole number (e.g. ${opts.example})` };
    if (n < opts.min || n > opts.max) return { error: `${n} is out of range (${opts.min}..${opts.max})` };
    return { ok: n };
  });
}

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

export function bool(): Field<boolean> {
  return field<boolean>((v) => {
    if (typeof v === 'boolean') return { ok: v };
    if (typeof v === 'string' && TRUE.has(v.toLowerCase())) return { ok: true };
    if (typeof v === 'string' && FALSE.has(v.toLowerCase())) return { ok: false };
    return { error: 'not a boolean (use true or false)' };
  });
}

/** A list, from a JSON array or a comma-separated string. */
export function list(opts: { example: string; allowed?: readonly string[] }): Field<string[]> {
  return field<string[]>((v) => {
    const items = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
    if (!Array.isArray(items) || !items.every((s) => typeof s === 'string')) return { error: `not a list (e.g. ${opts.example})` };
    const bad = opts.allowed ? items.filter((s) => !opts.allowed!.includes(s)) : [];
    if (bad.length > 0) return { error: `unknown ${bad.map((b) => JSON.stringify(b)).join(', ')} (known: ${opts.allowed!.join(', ')})` };
    return { ok: items as string[] };
  });
}

/** A path to a readable file (certificates, keys), checked now rather than at first connect. */
export function file(opts: { example: string }): Field<string> {
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

/** One of a few words. */
export function oneOf<const T extends string>(values: readonly T[]): Field<T> {
  return field<T>((v) =>
    typeof v === 'string' && (values as readonly string[]).includes(v) ? { ok: v as T } : { error: `must be ${values.map((x) => `"${x}"`).join(' or ')}` },
  );
}

/** Any string (an empty one included). */
export function anyText(): Field<string> {
  return field<string>((v) => (typeof v === 'string' ? { ok: v } : { error: 'not a string' }));
}
