// How the peer tier learns which peers exist and what they hold: it asks
// this host's daemon, whose mesh keeps the directory (src/node/cluster/mesh.ts),
// over the control socket (NODE_PEERS), and tells it about peers that
// lied (NODE_PENALIZE), so every later command avoids them too.
//
// A CLI process does not join the mesh itself: a libp2p node per command
// would cost seconds of start-up and churn the gossip mesh. It speaks
// gRPC and the bulk stream to peers directly, with the cluster secret.
import type { Digest } from '../../lib/digest.js';
import { hasCode, isVriftError } from '../../lib/errors.js';
import { ControlClient } from '../../node/control/client.js';
import type { PeerView } from '../../node/cluster/mesh.js';
import { F, MAX_PEERS_DIGESTS, Msg, type FieldList } from '../../node/control/protocol.js';
import { TierError } from '../tier.js';

export type { PeerView };

export interface DirectoryAnswer {
  /** This node's peer id (callers identify themselves with it). */
  self: string;
  peers: PeerView[];
}

export interface PeerDirectory {
  /** The peers, best first for `tree` (those holding it in full) or for `digests` (those that may hold most). */
  lookup(ask?: { tree?: Digest; digests?: readonly Digest[] }): Promise<DirectoryAnswer>;
  /** Reports a peer that sent wrong bytes. */
  penalize(peer: string, reason: string): Promise<void>;
  close(): void;
}

/** The directory of the daemon listening on `socketPath`. */
export class DaemonDirectory implements PeerDirectory {
  private client: Promise<ControlClient> | undefined;

  constructor(private readonly socketPath: string) {}

  private async request(type: number, fields: FieldList): Promise<string | undefined> {
    this.client ??= ControlClient.connect(this.socketPath);
    try {
      const c = await this.client;
      return (await c.request(type, fields)).str(F.JSON);
    } catch (e) {
      if (hasCode(e, 'ERR_VRIFT_DAEMON_GONE') || hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) this.client = undefined; // connect again next time
      throw toTierError(e);
    }
  }

  async lookup(ask: { tree?: Digest; digests?: readonly Digest[] } = {}): Promise<DirectoryAnswer> {
    const digests = ask.digests ?? [];
    const base: FieldList = ask.tree ? [[F.TREE, ask.tree]] : [];
    let answer: DirectoryAnswer | undefined;
    // Long digest lists go in slices; what each peer may hold is summed.
    for (let i = 0; i === 0 || i < digests.length; i += MAX_PEERS_DIGESTS) {
      const slice = digests.slice(i, i + MAX_PEERS_DIGESTS).map((d): [number, string] => [F.DIGEST, d]);
      const a = JSON.parse((await this.request(Msg.NODE_PEERS, [...base, ...slice])) ?? '{}') as DirectoryAnswer;
      if (!answer) answer = a;
      else {
        for (const p of a.peers) {
          const q = answer.peers.find((x) => x.id === p.id);
          if (q) q.mayHave = (q.mayHave ?? 0) + (p.mayHave ?? 0);
        }
      }
    }
    return answer!;
  }

  async penalize(peer: string, reason: string): Promise<void> {
    await this.request(Msg.NODE_PENALIZE, [
      [F.PEER, peer],
      [F.ERR_MSG, reason],
    ]);
  }

  close(): void {
    void this.client?.then((c) => c.close()).catch(() => undefined);
    this.client = undefined;
  }
}

function toTierError(e: unknown): TierError {
  if (hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) {
    return new TierError('peer', 'unavailable', 'no vrift daemon is running here, so no peers are known', {
      hint: 'start it with `vrift up --detach` (with the same cluster secret)',
    });
  }
  if (hasCode(e, 'ERR_VRIFT_CLUSTER_OFF')) {
    return new TierError('peer', 'config', 'the daemon here is not part of a cluster (it was started without the cluster secret)', {
      hint: 'restart it with the secret: `vrift down && vrift up --detach`',
    });
  }
  const msg = isVriftError(e) ? e.message : ((e as Error)?.message ?? String(e));
  return new TierError('peer', 'unavailable', `asking the daemon for peers failed: ${msg}`, { cause: e });
}
