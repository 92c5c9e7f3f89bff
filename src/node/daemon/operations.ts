// OP (shim/vrift_proto.h): the CLI asks the daemon to run an operation
// (save, restore, pull, push, materialize: src/node/ops/) so that every
// command of the host shares the daemon's one resolver: one fetch per blob
// and per tree, warm connections. Progress, warnings and notices go back
// as EVENT frames while it runs; the reply is its result, or its error
// with the exit status the CLI should end with.
//
// The daemon runs an operation only if it would do what the client's own
// process would: with the same configuration (the VRIFT_* variables the
// config reads) and in the same mount namespace (the same paths). Else it
// answers ERR_VRIFT_OP_ELSEWHERE and the CLI runs it in-process.
import { isAbsolute } from 'node:path';
import { VriftError } from '../../lib/errors.js';
import { mountNamespace } from '../../lib/proc.js';
import type { Metrics } from '../../lib/metrics.js';
import { F, type FieldList, type OpEvent, type OpRequest } from '../control/protocol.js';
import type { Call, Handler } from '../control/server.js';
import { isOperationName, OPERATIONS, type OperationName } from '../ops/index.js';
import type { OpContext, ProgressSink } from '../ops/operation.js';
import type { Resolver } from '../ops/resolver.js';
import type { Store } from '../store/store.js';
import { MTIME_MODES } from '../store/times.js';

export interface OperationsOptions {
  store: Store;
  resolver: () => Resolver;
  metrics: Metrics;
  log: (line: string) => void;
  /** The environment variables the daemon's configuration was read from (they must match the client's). */
  configEnv: readonly string[];
}

/** Progress events are sent at most this often per bar (a terminal redraws about as often). */
const PROGRESS_EVERY_MS = 100;

export function operationsHandler(opts: OperationsOptions): Handler {
  const ownNs = mountNamespace();
  return async (f, call): Promise<FieldList> => {
    const req = parseRequest(f.str(F.JSON));
    const differs = opts.configEnv.filter((name) => (req.env[name] ?? '') !== (process.env[name] ?? ''));
    if (differs.length > 0) {
      throw new VriftError('ERR_VRIFT_OP_ELSEWHERE', `the daemon runs with another configuration than this shell (${differs.join(', ')} differ)`, {
        hint: 'restart it from this environment (`vrift down && vrift up --detach`) so commands share its fetches',
      });
    }
    if (req.mntns !== undefined && ownNs !== undefined && req.mntns !== ownNs) {
      throw new VriftError('ERR_VRIFT_OP_ELSEWHERE', 'the daemon runs in another mount namespace (it would not see the same paths)', {
        hint: 'run a daemon inside this namespace to share its fetches',
      });
    }
    const op: OperationName = req.op as OperationName;
    const args = checkArgs(op, req.args);
    const before = opts.metrics.snapshot();
    const emit = (ev: OpEvent): void => call.emit([[F.JSON, JSON.stringify(ev)]]);
    const ctx: OpContext = {
      store: opts.store,
      resolver: async () => opts.resolver(),
      progress: (label, o) => eventProgress(call, emit, label, Boolean(o?.bytes)),
      warn: (message) => emit({ kind: 'warn', message }),
      notice: (message) => emit({ kind: 'notice', message }),
      metrics: () => delta(before, opts.metrics.snapshot()),
      signal: call.signal,
    };
    const started = Date.now();
    try {
      const result = await (OPERATIONS[op] as (c: OpContext, a: unknown) => Promise<unknown>)(ctx, args);
      opts.log(`${op}: done in ${Date.now() - started} ms (${describe(args)})`);
      return [[F.JSON, JSON.stringify(result)]];
    } catch (e) {
      if (call.signal.aborted) {
        opts.log(`${op}: abandoned after ${Date.now() - started} ms: its client went away (${describe(args)})`);
        throw new VriftError('ERR_VRIFT_OP_ABANDONED', `${op} was abandoned: its client went away`);
      }
      opts.log(`${op}: failed after ${Date.now() - started} ms (${describe(args)}): ${(e as Error).message}`);
      throw e;
    }
  };
}

function parseRequest(json: string | undefined): OpRequest {
  let req: Partial<OpRequest> | undefined;
  try {
    req = JSON.parse(json ?? '') as Partial<OpRequest>;
  } catch {
    req = undefined;
  }
  if (typeof req !== 'object' || req === null || typeof req.op !== 'string' || typeof req.args !== 'object' || req.args === null || typeof req.env !== 'object' || req.env === null) {
    throw new VriftError('ERR_VRIFT_PROTO_FIELD', 'OP takes a JSON field {"op","args","env"}', { hint: 'client and daemon versions may differ' });
  }
  if (!isOperationName(req.op)) {
    throw new VriftError('ERR_VRIFT_PROTO_FIELD', `unknown operation ${JSON.stringify(req.op)} (known: ${Object.keys(OPERATIONS).join(', ')})`, {
      hint: 'client and daemon versions may differ',
    });
  }
  return req as OpRequest;
}

/** The fields each operation takes, and their types ("path": an absolute path; "?": may be absent). */
const ARG_TYPES: Record<OperationName, Record<string, 'string' | 'path' | 'boolean' | 'any' | 'boolean?' | 'mtimes?'>> = {
  save: { ref: 'string', key: 'any', dir: 'path', mtimes: 'boolean?' },
  restore: { ref: 'string', key: 'any', dir: 'path', force: 'boolean', copy: 'boolean', mtimes: 'mtimes?' },
  pull: { treeish: 'string' },
  push: { treeish: 'string' },
  materialize: { treeish: 'string', dir: 'path', force: 'boolean', copy: 'boolean', mtimes: 'mtimes?' },
};

/** A malformed request is refused with a clear error, before anything runs. */
function checkArgs(op: OperationName, args: Record<string, unknown>): Record<string, unknown> {
  for (const [name, type] of Object.entries(ARG_TYPES[op])) {
    const v = args[name];
    const ok =
      type === 'any' ||
      (type === 'boolean' && typeof v === 'boolean') ||
      (type === 'boolean?' && (v === undefined || typeof v === 'boolean')) ||
      (type === 'mtimes?' && (v === undefined || (MTIME_MODES as readonly unknown[]).includes(v))) ||
      (type === 'string' && typeof v === 'string' && v.length > 0) ||
      (type === 'path' && typeof v === 'string' && isAbsolute(v));
    if (!ok) throw new VriftError('ERR_VRIFT_PROTO_FIELD', `${op}: argument ${name} must be ${type === 'path' ? 'an absolute path' : type === 'mtimes?' ? `one of ${MTIME_MODES.join(', ')}` : `a ${type}`}`, { hint: 'client and daemon versions may differ' });
  }
  return args;
}

/** A progress bar whose updates go to the client, at most every PROGRESS_EVERY_MS. */
function eventProgress(call: Call, emit: (ev: OpEvent) => void, label: string, bytes: boolean): ProgressSink {
  let last = 0;
  return {
    update: (done, total) => {
      const now = Date.now();
      if (call.signal.aborted || (now - last < PROGRESS_EVERY_MS && done < total)) return;
      last = now;
      emit({ kind: 'progress', label, bytes, done, total });
    },
    done: () => emit({ kind: 'progress-end', label }),
  };
}

/** The counters that moved between two snapshots. */
function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

function describe(args: Record<string, unknown>): string {
  return ['ref', 'treeish', 'dir'].flatMap((k) => (typeof args[k] === 'string' ? [`${k} ${args[k] as string}`] : [])).join(', ');
}
