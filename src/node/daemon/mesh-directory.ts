// The peer tier's directory when the chain runs inside the daemon: the
// daemon's own mesh, asked directly (a CLI process asks it over the
// control socket instead: src/tiers/peer/directory.ts).
import type { Digest } from '../../lib/digest.js';
import type { DirectoryAnswer, PeerDirectory } from '../../tiers/peer/directory.js';
import type { Mesh } from '../cluster/mesh.js';

export class MeshDirectory implements PeerDirectory {
  constructor(private readonly mesh: Mesh) {}

  async lookup(ask: { tree?: Digest; digests?: readonly Digest[] } = {}): Promise<DirectoryAnswer> {
    return { self: this.mesh.peerId, peers: this.mesh.peers({ tree: ask.tree, digests: ask.digests ? [...ask.digests] : undefined }) };
  }

  async penalize(peer: string, reason: string): Promise<void> {
    this.mesh.penalize(peer, reason);
  }

  close(): void {
    /* the mesh is the daemon's: it stops with it */
  }
}
