// The operations a node runs for the CLI, by name: the daemon runs them
// for its clients (src/node/daemon/operations.ts), local-host.ts runs them
// in the CLI's own process when no daemon runs. One implementation each.
import { materialize } from './materialize.js';
import type { Operation } from './operation.js';
import { pull } from './pull.js';
import { push } from './push.js';
import { restore } from './restore.js';
import { save } from './save.js';

export const OPERATIONS = { save, restore, pull, push, materialize } as const satisfies Record<string, Operation<never, unknown>>;

export type OperationName = keyof typeof OPERATIONS;

export function isOperationName(name: string): name is OperationName {
  return Object.hasOwn(OPERATIONS, name);
}
