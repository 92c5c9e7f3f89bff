// The peer tier against the tier contract (test/compliance/tier-suite.ts):
// two real daemons on loopback, A serving and C (joined to A) keeping the
// directory the tier asks. Peers are read-only, so the suite gives A its
// content by writing into A's store directly.
import { join } from 'node:path';
import { clusterSection } from '../../src/node/cluster/config.js';
import { loadNodeConfig } from '../../src/node/ops/node-config.js';
import { socketPathOf } from '../../src/node/control/paths.js';
import { ingest } from '../../src/node/store/ingest.js';
import { Store } from '../../src/node/store/store.js';
import { Metrics } from '../../src/lib/metrics.js';
import { DaemonDirectory } from '../../src/tiers/peer/directory.js';
import { PeerTier } from '../../src/tiers/peer/peer.js';
import { tierSuite } from '../compliance/tier-suite.js';
import { makeNode, startAll, waitForPeers } from '../helpers/cluster.js';
import { tempDir } from '../helpers/tmp.js';

tierSuite('peer', async () => {
  // A slower beat than the other peer tests: a crashed A stays listed for 3 s, long enough to be asked.
  const env = { VRIFT_CLUSTER_ANNOUNCE_MS: '1000' };
  const [a, c] = await Promise.all([makeNode('a', { env }), makeNode('c', { env })]);
  await startAll([a, c]);
  const aId = a.peerId();
  c.json(['node', 'join', a.addr()]);
  await waitForPeers(c, [aId]);
  const served = Store.open(a.home); // A's store, shared with A's daemon (LMDB is multi-process)
  const local = Store.open(tempDir());
  const cfg = loadNodeConfig({ home: c.home, env: c.env }).get(clusterSection) as ConstructorParameters<typeof PeerTier>[0];
  const tier = new PeerTier(cfg, { store: local, metrics: new Metrics(), log: () => undefined }, new DaemonDirectory(socketPathOf(join(c.home, 'run'))));
  return {
    tier,
    largeBlobBytes: 3 * (1 << 20) + 12345, // several gRPC messages of GetBlob
    seed: {
      async blob(digest, buf) {
        served.putBlob(buf, digest);
        await served.meta.flush();
      },
      async ref(name, tree, times) {
        served.setRef(name, tree, { times });
        await served.meta.flush();
      },
      async tree(dir) {
        const { tree } = await ingest(served, dir);
        await served.meta.flush();
        return tree;
      },
    },
    breakIt: async () => a.crash(),
    fixIt: async () => {
      a.start();
      await waitForPeers(c, [aId]);
    },
    cleanup: async () => {
      await tier.close();
      await Promise.all([served.close(), local.close()]);
      a.stop();
      c.stop();
    },
  };
});
