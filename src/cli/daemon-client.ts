// How CLI commands reach the daemon of $VRIFT_HOME.
import { ControlClient } from '../node/control-client.js';
import { socketPathOf } from '../node/daemon-paths.js';
import { homeLayout, resolveHome } from '../node/home.js';

export function daemonSocket(): string {
  return socketPathOf(homeLayout(resolveHome()).run);
}

/** Runs `fn` with a connection to the daemon (ERR_VRIFT_DAEMON_DOWN when there is none). */
export async function withDaemon<T>(fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const c = await ControlClient.connect(daemonSocket());
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}
