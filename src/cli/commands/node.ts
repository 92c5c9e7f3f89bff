// vrift node join | peers | leave: this node's membership of the cluster,
// through its daemon (which runs the mesh: src/node/cluster/mesh.ts).
import type { Command } from 'commander';
import { assertDigest } from '../../lib/digest.js';
import type { PeerView } from '../../node/cluster/mesh.js';
import { F, Msg, type FieldList } from '../../node/control/protocol.js';
import { plain, subcommand } from '../command.js';
import { withDaemon } from '../daemon-client.js';

async function ask<T>(type: number, fields: FieldList = []): Promise<T> {
  return withDaemon(async (c) => JSON.parse((await c.request(type, fields)).str(F.JSON) ?? '{}') as T);
}

function ago(ms: number): string {
  return ms < 1000 ? `${ms} ms ago` : `${Math.round(ms / 1000)} s ago`;
}

export function register(program: Command): void {
  const node = program.command('node').description('join, list and leave the peers of this node (through its daemon)');

  subcommand(node, 'join <multiaddr>', 'join the cluster through a member (its address from `vrift status`); remembered across restarts')
    .action(
      plain(async ({ out, args }) => {
        const r = await ask<{ peer: string; addr: string }>(Msg.NODE_JOIN, [[F.ADDR, args[0]!]]);
        out.result(r, () => `joined ${r.peer} at ${r.addr} (remembered)`);
      }),
    );

  subcommand(node, 'peers', 'list the peers this node knows: address, what they hold, whether they are avoided')
    .option('--tree <tree>', 'mark the peers that announced this tree (id) in full, and list them first')
    .action(
      plain(async ({ out, opts }) => {
        const tree = opts.tree as string | undefined;
        if (tree !== undefined) assertDigest(tree, 'tree id');
        const r = await ask<{ self: string; left: boolean; peers: PeerView[] }>(Msg.NODE_PEERS, tree ? [[F.TREE, tree]] : []);
        out.result(r, () => {
          if (r.peers.length === 0) return [`${r.self}: no peers${r.left ? ' (this node left the mesh; `vrift node join` to rejoin)' : ''}`];
          return [
            `${r.self}: ${r.peers.length} peer${r.peers.length === 1 ? '' : 's'}`,
            ...r.peers.map((p) => {
              const flags = [p.connected ? 'connected' : 'via gossip', p.hasTree ? 'holds the tree' : '', p.penalizedUntil ? `AVOIDED: ${p.penalty}` : ''].filter(Boolean).join(', ');
              return `  ${p.id}  ${p.grpc}  ${p.trees} trees, ${p.blobs} blobs  seen ${ago(p.seenMsAgo)}  ${flags}`;
            }),
          ];
        });
      }),
    );

  subcommand(node, 'leave [multiaddr]', 'forget one remembered member, or (without an address) leave the mesh until the next join')
    .action(
      plain(async ({ out, args }) => {
        const addr = args[0];
        const r = await ask<{ forgot: string[]; left: boolean }>(Msg.NODE_LEAVE, addr ? [[F.ADDR, addr]] : []);
        out.result(r, () =>
          r.left
            ? `left the mesh${r.forgot.length > 0 ? ` (forgot ${r.forgot.join(', ')})` : ''}; \`vrift node join\` rejoins`
            : r.forgot.length > 0
              ? `forgot ${r.forgot.join(', ')}`
              : `${addr} was not remembered`,
        );
      }),
    );
}
