// How the CLI runs an operation (save, restore, pull, push, materialize):
// by asking the daemon of the home when one runs, so every command of the
// host shares its one resolver (one fetch per blob and per tree, warm
// connections), and in its own process otherwise, with the very same
// operation code (src/node/ops/). Either way the user sees the same
// progress bars, output and exit status.
import { hasCode, type VriftError } from '../lib/errors.js';
import { mountNamespace } from '../lib/proc.js';
import { ControlClient } from '../node/control/client.js';
import { F, Msg, type OpEvent, type OpRequest } from '../node/control/protocol.js';
import type { OperationName } from '../node/ops/index.js';
import type { ProgressSink } from '../node/ops/operation.js';
import { daemonSocket } from './daemon-client.js';
import type { Output } from './output.js';

/** Runs `op` with `args` (paths absolute) through the daemon if one runs, else here; returns its result. */
export async function runOperation<R>(op: OperationName, args: Record<string, unknown>, out: Output): Promise<R> {
  let client: ControlClient | undefined;
  try {
    client = await ControlClient.connect(daemonSocket());
  } catch (e) {
    if (!hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) throw e;
  }
  if (client) {
    try {
      return (await viaDaemon(client, op, args, out)) as R;
    } catch (e) {
      if (!hasCode(e, 'ERR_VRIFT_OP_ELSEWHERE')) throw e;
      out.notice(`${(e as VriftError).message}: running ${op} in this process (${(e as VriftError).hint ?? ''})`);
    } finally {
      client.close();
    }
  }
  // Loaded only here: a command the daemon runs never loads the store, the config or the tiers.
  const { runLocally } = await import('../node/ops/local-host.js');
  return (await runLocally(op, args, out)) as R;
}

async function viaDaemon(client: ControlClient, op: OperationName, args: Record<string, unknown>, out: Output): Promise<unknown> {
  const req: OpRequest = { op, args, env: vriftEnv(), mntns: mountNamespace() };
  const bars = new Map<string, ProgressSink>();
  const onEvent = (ev: OpEvent): void => {
    if (ev.kind === 'warn') out.warn(ev.message);
    else if (ev.kind === 'notice') out.notice(ev.message);
    else if (ev.kind === 'progress') {
      let bar = bars.get(ev.label);
      if (!bar) bars.set(ev.label, (bar = out.progress(ev.label, { bytes: ev.bytes })));
      bar.update(ev.done, ev.total);
    } else {
      bars.get(ev.label)?.done();
      bars.delete(ev.label);
    }
  };
  try {
    const reply = await client.request(Msg.OP, [[F.JSON, JSON.stringify(req)]], (f) => {
      try {
        onEvent(JSON.parse(f.str(F.JSON) ?? '') as OpEvent);
      } catch {
        /* an event this client does not understand: only progress is lost */
      }
    });
    return JSON.parse(reply.str(F.JSON) ?? 'null');
  } finally {
    for (const bar of bars.values()) bar.done();
  }
}

/** The VRIFT_* variables of this process (the daemon serves it only if its configuration reads the same). */
function vriftEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('VRIFT_') && e[1] !== undefined));
}
