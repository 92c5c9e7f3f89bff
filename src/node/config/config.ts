// The one configuration of a node: $VRIFT_HOME/config.json (or the file
// $VRIFT_CONFIG names) overlaid with environment variables, validated in
// full when a command starts. Every mistake gets its own line naming
// where it came from (the variable, or the file and key) and a good value:
//
//   VRIFT_S3_ENDPOINT: not a URL (e.g. http://127.0.0.1:9000)
//
// Each component owns its section (a ConfigSection next to its code: the
// chain's retries, one per tier, the cluster's secret and addresses); the
// caller passes the sections it knows (src/node/ops/node-config.ts lists
// a node's), so this folder depends on no component.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoOf, VriftError } from '../../lib/errors.js';
import type { ConfigSection } from './schema.js';

export type { ConfigSection } from './schema.js';

export class Config {
  constructor(
    private readonly values: ReadonlyMap<string, unknown>,
    /** The config file that was read, if any. */
    readonly file: string | undefined,
  ) {}

  /** The validated value of a section (undefined for a tier nobody configured). */
  get<T>(section: ConfigSection<T>): T {
    return this.values.get(section.key) as T;
  }
}

export interface LoadOptions {
  home: string;
  env?: NodeJS.ProcessEnv;
  /** Every section the caller knows, in the order messages list them. */
  sections: readonly ConfigSection<unknown>[];
}

/** Reads and validates the configuration; throws ERR_VRIFT_CONFIG_INVALID listing every mistake. */
export function loadConfig(opts: LoadOptions): Config {
  const env = opts.env ?? process.env;
  const sections = opts.sections;
  const explicit = env.VRIFT_CONFIG && env.VRIFT_CONFIG.length > 0 ? env.VRIFT_CONFIG : undefined;
  const path = explicit ?? join(opts.home, 'config.json');
  const fromFile = readConfigFile(path, explicit !== undefined);
  const mistakes: string[] = [];
  const known = new Set(sections.map((s) => s.key));
  for (const k of Object.keys(fromFile ?? {})) {
    if (!known.has(k)) mistakes.push(`${path}: unknown section "${k}" (known: ${[...known].join(', ')})`);
  }

  const values = new Map<string, unknown>();
  for (const section of sections) {
    const fileValue = fromFile?.[section.key];
    // Where each key came from, for messages: "VRIFT_S3_ENDPOINT" or "<file>: s3.endpoint".
    const origin = new Map<string, string>();
    let raw: Record<string, unknown> | undefined;
    if (fileValue !== undefined) {
      if (typeof fileValue !== 'object' || fileValue === null || Array.isArray(fileValue)) {
        mistakes.push(`${path}: ${section.key}: not an object (e.g. "${section.key}": { … })`);
        continue;
      }
      raw = structuredClone(fileValue as Record<string, unknown>);
    }
    for (const [name, key] of Object.entries(section.env ?? {})) {
      const v = env[name];
      if (v === undefined || v === '') continue;
      raw ??= {};
      setPath(raw, key, v);
      origin.set(key, name);
    }
    const parsed = section.schema.parse(raw);
    if (parsed.ok) {
      values.set(section.key, parsed.value);
      continue;
    }
    for (const issue of parsed.issues) {
      const dotted = issue.path.join('.');
      const where =
        dotted === ''
          ? fileValue !== undefined ? `${path}: ${section.key}` : section.key // a rule over the whole section
          : fileValue !== undefined && !origin.has(dotted) && hasPath(fileValue, dotted)
            ? `${path}: ${section.key}.${dotted}`
            : label(section, dotted, origin, path);
      mistakes.push(`${where}: ${issue.message}`);
    }
  }
  if (mistakes.length > 0) {
    const lines = mistakes.length === 1 ? mistakes[0]! : `${mistakes.length} problems:\n  ${mistakes.join('\n  ')}`;
    throw new VriftError('ERR_VRIFT_CONFIG_INVALID', `invalid configuration: ${lines}`, {
      hint: `fix the environment variable or ${path}; docs/configuration.md lists every setting`,
    });
  }
  return new Config(values, fromFile ? path : undefined);
}

function readConfigFile(path: string, mustExist: boolean): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' && !mustExist) return undefined;
    throw new VriftError('ERR_VRIFT_CONFIG_INVALID', `${path}: cannot read the config file (${errnoOf(e) ?? (e as Error).message})`, {
      hint: mustExist ? 'check VRIFT_CONFIG' : 'check the file and its permissions',
    });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new VriftError('ERR_VRIFT_CONFIG_INVALID', `${path}: not valid JSON (${(e as Error).message})`, {
      hint: 'the config file is one JSON object, e.g. {"s3": {"bucket": "vrift-cache"}}',
    });
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new VriftError('ERR_VRIFT_CONFIG_INVALID', `${path}: not a JSON object`, {
      hint: 'the config file is one JSON object, e.g. {"s3": {"bucket": "vrift-cache"}}',
    });
  }
  return data as Record<string, unknown>;
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== 'object' || next === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function hasPath(obj: unknown, dotted: string): boolean {
  let cur = obj;
  for (const p of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null || !(p in cur)) return false;
    cur = (cur as Record<string, unknown>)[p];
  }
  return true;
}

/** Names where a value came from: its variable, its place in the file, or (when missing) both options. */
function label(section: ConfigSection<unknown>, dotted: string, origin: Map<string, string>, file: string): string {
  const full = dotted ? `${section.key}.${dotted}` : section.key;
  const fromEnv = origin.get(dotted);
  if (fromEnv) return fromEnv;
  const envName = Object.entries(section.env ?? {}).find(([, k]) => k === dotted)?.[0];
  return envName ? `${full} (${envName} or ${file})` : `${file}: ${full}`;
}
