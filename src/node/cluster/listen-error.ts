// One line for a cluster listener that cannot listen (a port taken, a
// privileged port, an address not on this host): which port, on which
// host, for what, and which variable (or config key) to set. The three
// listeners report failure in three shapes (a node:net error with a code,
// grpc-js's "No address added … [listen EADDRINUSE …]", libp2p's
// UnsupportedListenAddressesError); all carry the errno's name in their text.
import { VriftError } from '../../lib/errors.js';
import { clusterSection, type ClusterConfig } from './config.js';

export interface Listener {
  /** What listens, for the message: "the cluster's gRPC service". */
  what: string;
  host: string;
  port: number;
  /** The config key of the port (cluster.<key>). */
  portKey: keyof ClusterConfig;
}

/** The environment variable that sets a key of the cluster section. */
function envVarOf(key: keyof ClusterConfig): string {
  return Object.entries(clusterSection.env ?? {}).find(([, k]) => k === key)?.[0] ?? `cluster.${key}`;
}

function setting(key: keyof ClusterConfig): string {
  return `${envVarOf(key)}, or ${clusterSection.key}.${key} in config.json,`;
}

/** The errno name a listen failure carries, in any of the three shapes. */
function listenErrno(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('E')) return code;
  const text = [e, ...((e as { errors?: unknown[] } | null)?.errors ?? [])].map((x) => String((x as Error | undefined)?.message ?? x)).join(' ');
  return /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL|EPERM)\b/.exec(text)?.[1];
}

/** A listen failure as one clear line (anything else is returned as it is). */
export function listenError(e: unknown, l: Listener): unknown {
  const at = `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
  switch (listenErrno(e)) {
    case 'EADDRINUSE':
      return new VriftError('ERR_VRIFT_CLUSTER_PORT_TAKEN', `port ${l.port} on ${l.host} is already in use: ${l.what} cannot listen there`, {
        hint: `set ${setting(l.portKey)} to a free port; or stop what listens on it`,
        cause: e,
      });
    case 'EACCES':
    case 'EPERM':
      return new VriftError('ERR_VRIFT_CLUSTER_PORT_DENIED', `port ${l.port} on ${l.host} needs privileges this process lacks: ${l.what} cannot listen there`, {
        hint: `set ${setting(l.portKey)} to a port above 1023`,
        cause: e,
      });
    case 'EADDRNOTAVAIL':
      return new VriftError('ERR_VRIFT_CLUSTER_HOST', `${l.host} is not an address of this host: ${l.what} cannot listen on ${at}`, {
        hint: `set ${setting('host')} to one of this host's addresses, or 0.0.0.0`,
        cause: e,
      });
    default:
      return e;
  }
}
