// vriftd: the per-host daemon. It builds its components (store, mounts,
// cluster: bulk server, peer service, mesh; the resolver: the host's one
// chain of tiers; control socket last, so a client that can connect finds
// everything up), starts them in order and stops them in reverse. It runs
// the CLI's operations (operations.ts) and resolves the shim's misses
// (fetch.ts) through that one resolver.
import { VriftError } from '../../lib/errors.js';
import { Metrics, TIER_COUNTERS } from '../../lib/metrics.js';
import { loadNative } from '../../lib/native.js';
import { Cluster } from '../cluster/cluster.js';
import { loadNodeConfig, NODE_CONFIG_ENV } from '../ops/node-config.js';
import { openResolver } from '../ops/open-resolver.js';
import type { Resolver } from '../ops/resolver.js';
import { fetchHandler } from './fetch.js';
import { LazyMounts } from './lazy-mounts.js';
import { PartialMounts } from './partial-mounts.js';
import { BlobStreams } from './blob-streams.js';
import { MetricsServer, type ScrapeGauge } from './metrics-server.js';
import { metricsSection } from '../metrics/config.js';
import { refsSection } from '../../tiers/ref-trust.js';
import { Scrub } from './scrub.js';
import { Evictor } from './evictor.js';
import { storeSection } from '../store/store-config.js';
import { mountSection, type LazyConfig } from '../mount/lazy-config.js';
import { MeshDirectory } from './mesh-directory.js';
import { SwarmHost } from './swarm-host.js';
import { WarmPeers } from './warm-peers.js';
import { operationsHandler } from './operations.js';
import { socketPathOf } from '../control/paths.js';
import { acquireDaemonLock } from './lock.js';
import { ControlServer, requireStr, type Handler } from '../control/server.js';
import { MountManager, type PrebuiltVDir } from '../mount/mounts.js';
import { registerMountWrites } from '../mount/writes.js';
import { registerNs } from '../mount/ns.js';
import { F, Msg, type FieldList } from '../control/protocol.js';
import { Store } from '../store/store.js';
import { metaWriteError } from '../store/meta.js';
import { resolveHome } from '../store/home.js';
import { assertRoomToStart, stderrLog } from './room.js';

export const DAEMON_VERSION = '0.1.0';

export interface Component {
  name: string;
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
}

export interface DaemonOptions {
  home?: string;
  log?: (line: string) => void;
}

/** Errnos with which LMDB fails a write transaction the disk refused (EIO, ENOSPC, EDQUOT): a failed metadata write, not a bug. */
const LMDB_WRITE_ERRNOS = new Set([5, 28, 122]);

export class Daemon {
  readonly store: Store;
  readonly mounts: MountManager;
  /** Lazy mounts' accounting, traces, prefetch and bulk switch. */
  readonly lazy: LazyMounts;
  /** Large files read while they arrive (docs/lazy.md "Large files stream"). */
  readonly streams: BlobStreams;
  /** GET /metrics (Prometheus). */
  readonly metricsServer: MetricsServer;
  /** Membership of the cluster; undefined when no cluster secret is set (the node runs alone). */
  readonly cluster: Cluster | undefined;
  /** Swarms of the trees this node fetches or serves (in a cluster with the bulk port). */
  readonly swarms: SwarmHost | undefined;
  readonly metrics = new Metrics();
  readonly socketPath: string;
  private resolverInstance: Resolver | undefined;
  readonly startedAt = Date.now();
  private readonly components: Component[] = [];
  /** Re-hashes the store in the background at a bounded rate (scrub.ts). */
  private readonly scrub: Scrub;
  /** Keeps the store under store.maxSize (evictor.ts). */
  private readonly evictor: Evictor;
  private readonly mountConfig: LazyConfig;
  /** Mounts from a tree's lazy index (docs/lazy.md "Partial metadata"). */
  private readonly partials: PartialMounts;
  private readonly started: Component[] = [];
  private releaseLock: (() => void) | undefined;
  private listening = false;
  private stopping: Promise<void> | undefined;
  private readonly stoppedResolvers: (() => void)[] = [];
  readonly log: (line: string) => void;

  constructor(opts: DaemonOptions = {}) {
    this.log = opts.log ?? stderrLog();
    assertRoomToStart(resolveHome(opts.home));
    this.store = Store.open(opts.home, { metrics: this.metrics });
    this.socketPath = socketPathOf(this.store.layout.run);
    this.mounts = new MountManager(this.store, this.log);
    const config = loadNodeConfig({ home: this.store.layout.root }); // validated in full: a mistake stops the start
    const mountConfig = config.get(mountSection);
    this.mountConfig = mountConfig;
    this.lazy = new LazyMounts({ store: this.store, mounts: this.mounts, resolver: () => this.resolver(), config: mountConfig, metrics: this.metrics, log: this.log });
    this.partials = new PartialMounts({ store: this.store, mounts: this.mounts, lazy: this.lazy, resolver: () => this.resolver(), config: mountConfig, log: this.log });
    this.evictor = new Evictor({ store: this.store, config: config.get(storeSection), metrics: this.metrics, log: this.log });
    this.metricsServer = new MetricsServer(this.metrics, config.get(metricsSection), this.scrapeGauges(), this.log);
    this.streams = new BlobStreams({ store: this.store, resolver: () => this.resolver(), log: this.log }, { enabled: mountConfig.stream, minBytes: mountConfig.streamMinBytes });
    this.scrub = new Scrub({ store: this.store, bytesPerSec: mountConfig.scrubBytesPerSec, log: this.log });
    this.cluster = Cluster.create({ store: this.store, config, metrics: this.metrics, log: this.log, signingKey: config.get(refsSection).signingKey });
    const control = new ControlServer({ socketPath: this.socketPath, handlers: this.handlers(), log: this.log });
    const cluster = this.cluster;
    // Connections to peers, opened as they appear; shared by the peer tier and the swarms.
    const warm = cluster ? new WarmPeers(cluster.mesh, cluster.cfg, cluster.keys) : undefined;
    // Swarms of large trees (docs/peers.md, "Flash crowds"): with the bulk port only.
    this.swarms = cluster?.bulk && warm ? new SwarmHost({ store: this.store, mesh: cluster.mesh, cfg: cluster.cfg, conns: warm.conns, metrics: this.metrics, log: this.log }) : undefined;
    if (cluster && this.swarms) cluster.service.swarms = this.swarms;
    this.components.push(
      { name: 'mounts', start: () => this.mounts.restore(), stop: () => this.mounts.stop() },
      // (before the mesh, whose peers it warms; stopped after every user of the connections)
      ...(warm ? [warm] : []),
      ...(cluster?.components() ?? []),
      ...(this.swarms ? [this.swarms] : []),
      {
        name: 'resolver',
        start: () => {
          const log = (level: 'warn' | 'info', m: string) => this.log(level === 'warn' ? `warning: ${m}` : m);
          this.resolverInstance = openResolver({ store: this.store, config, metrics: this.metrics, log, peers: cluster ? new MeshDirectory(cluster.mesh) : undefined, peerConnections: warm?.conns });
          // Each remote tier's outcome counters exist from the first scrape, at 0.
          for (const tier of this.resolverInstance.tierNames().filter((t) => t !== 'local')) {
            for (const name of [TIER_COUNTERS.hits, TIER_COUNTERS.misses, TIER_COUNTERS.errors, TIER_COUNTERS.bytesIn, TIER_COUNTERS.bytesOut]) this.metrics.declare(name, { tier });
          }
          if (this.swarms) {
            this.swarms.useChain(this.resolverInstance.chain);
            this.resolverInstance.swarms = this.swarms;
          }
          // The first mount or fetch a program waits for should not load the S3 SDK or dial Redis,
          // nor the native addon that hashes and writes what arrives (~3 ms).
          this.resolverInstance.warm();
          loadNative();
        },
        stop: () => this.resolverInstance?.close(),
      },
      // after the resolver (prefetch and trace pushes use it), before control (FETCH reports to it)
      { name: 'lazy mounts', start: () => this.lazy.start(), stop: () => this.lazy.stop() },
      { name: 'partial mounts\' traces', start: () => undefined, stop: () => this.partials.stop() },
      { name: 'large-file streams', start: () => this.streams.start(), stop: () => this.streams.stop() },
      { name: 'metrics', start: () => this.metricsServer.start(), stop: () => this.metricsServer.stop() },
      { name: 'scrub', start: () => this.scrub.start(), stop: () => this.scrub.stop() },
      { name: 'evictor', start: () => this.evictor.start(), stop: () => this.evictor.stop() },
      { name: 'control', start: () => control.start(), stop: () => control.stop() },
    );
  }

  async start(): Promise<void> {
    process.on('unhandledRejection', this.onUnhandled);
    this.releaseLock = acquireDaemonLock(this.store.layout.run, this.store.layout.root);
    try {
      for (const c of this.components) {
        await c.start();
        this.started.push(c);
      }
    } catch (e) {
      await this.stop();
      throw e;
    }
    this.listening = true;
    this.log(`listening on ${this.socketPath} (pid ${process.pid}, home ${this.store.layout.root})`);
  }

  /** Stops components in reverse order; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of this.started.reverse()) {
        try {
          await c.stop();
        } catch (e) {
          this.log(`stopping ${c.name}: ${(e as Error).message}`);
        }
      }
      await this.store.close();
      this.releaseLock?.();
      process.off('unhandledRejection', this.onUnhandled);
      if (this.listening) this.log('stopped'); // a start that failed says why, once, in its error
      for (const r of this.stoppedResolvers) r();
    })();
    return this.stopping;
  }

  /**
   * A metadata write nobody waited for failed (LMDB's commit, on a disk
   * that filled up): one log line (at most every 10 s), and the daemon goes
   * on. Any other unhandled rejection is a bug and still ends the process.
   */
  private readonly onUnhandled = (e: unknown): void => {
    // (LMDB reports a write the disk refused with the errno as a number: EIO once a full disk refused its pages)
    const errno = (e as { code?: unknown } | null)?.code;
    const commit = (typeof e === 'object' && e !== null && 'commitError' in e) || (typeof errno === 'number' && LMDB_WRITE_ERRNOS.has(errno));
    const full = metaWriteError(e, this.store.meta.path);
    if (!commit && full.code !== 'ERR_VRIFT_META_FULL') throw e;
    if (Date.now() - this.metaFailureAt < 10_000) return;
    this.metaFailureAt = Date.now();
    this.log(`${this.store.meta.path}: a metadata write failed (${commit ? `its commit failed: ${(e as Error).message}` : full.message}): recent changes (mounts, peers) may be lost; free space on that filesystem`);
  };
  private metaFailureAt = 0;

  /** Resolves once the daemon has stopped (after `vrift down` or a signal). */
  stopped(): Promise<void> {
    return new Promise((r) => this.stoppedResolvers.push(r));
  }

  /** The host's resolver (built when the daemon starts). */
  resolver(): Resolver {
    if (!this.resolverInstance) throw new VriftError('ERR_VRIFT_DAEMON_STARTING', 'the daemon is still starting', { hint: 'try again in a moment' });
    return this.resolverInstance;
  }

  status(): Record<string, unknown> {
    return {
      pid: process.pid,
      version: DAEMON_VERSION,
      home: this.store.layout.root,
      uptimeSec: Math.round((Date.now() - this.startedAt) / 1000),
      addresses: { control: this.socketPath, ...this.cluster?.addresses() },
      cluster: this.cluster?.status() ?? { enabled: false },
      mounts: this.mounts.list().map((m) => ({ ...m, ...this.lazy.statusOf(m.path) })),
      inFlight: this.resolverInstance?.inFlight() ?? { blobs: 0, trees: 0 },
      streams: this.streams.status(),
      swarms: this.swarms?.status() ?? [],
      metricsUrl: this.metricsServer.url ?? null,
      scrub: this.scrub.status(),
      store: this.evictor.status(),
      metrics: this.metrics.snapshot(),
    };
  }

  /** What /metrics reads at each scrape besides the counters (no refs, paths or digests as labels). */
  private scrapeGauges(): ScrapeGauge[] {
    // A walk of the blob index: at most every 30 s (the evictor's, fresher while a cap is set).
    const store = () => this.evictor.storeTotals(30_000);
    const sum = (pick: 'fetchedOnOpen' | 'prefetched' | 'local') =>
      this.mounts.list().reduce((n, m) => n + ((this.lazy.statusOf(m.path)?.[pick] as { blobs: number } | undefined)?.blobs ?? 0), 0);
    return [
      { name: 'vrift_store_blobs', help: 'Blobs in the local store (its index).', read: () => store().blobs },
      { name: 'vrift_store_bytes', help: 'Bytes of the blobs in the local store.', read: () => store().bytes },
      { name: 'vrift_store_max_bytes', help: 'The cap the daemon keeps the store under (store.maxSize); 0: none.', read: () => this.evictor.status().maxSize ?? 0 },
      { name: 'vrift_mounts', help: 'Trees mounted by this daemon.', read: () => this.mounts.list().length },
      { name: 'vrift_peers', help: 'Peers this node knows in the cluster mesh.', read: () => (this.cluster?.status().peers as number | undefined) ?? 0 },
      {
        name: 'vrift_fetches_in_flight',
        help: 'Fetches running now: blobs, and whole trees.',
        labelNames: ['kind'],
        read: () => {
          const f = this.resolverInstance?.inFlight() ?? { blobs: 0, trees: 0 };
          return [
            [{ kind: 'blob' }, f.blobs],
            [{ kind: 'tree' }, f.trees],
          ];
        },
      },
      {
        name: 'vrift_mount_blobs',
        help: "Blobs of the mounted trees, by how they got here: fetched when a program opened them, prefetched from a trace, or local at mount (since the daemon started).",
        labelNames: ['how'],
        read: () => [
          [{ how: 'fetched_on_open' }, sum('fetchedOnOpen')],
          [{ how: 'prefetched' }, sum('prefetched')],
          [{ how: 'local' }, sum('local')],
        ],
      },
      { name: 'vrift_streams_active', help: 'Large blobs being read while they arrive.', read: () => this.streams.status().active },
    ];
  }

  /** MountWritesContext.nameAll: a partial mount's full listing, before files not opened yet move. */
  nameAll(root: string): Promise<void> {
    return this.partials.nameAll(root);
  }

  /** MountWritesContext.ensureTree: a partial mount's full listing, for a snapshot. */
  ensureTree(tree: string): Promise<unknown> {
    return this.resolver().ensureListing(tree);
  }

  private handlers(): Map<number, Handler> {
    const h = new Map<number, Handler>();
    h.set(Msg.HELLO, (): FieldList => [
      [F.PID, { u32: process.pid }],
      [F.VERSION, DAEMON_VERSION],
      [F.HOME, this.store.layout.root],
    ]);
    h.set(Msg.STATUS, (): FieldList => [[F.JSON, JSON.stringify(this.status())]]);
    h.set(Msg.MOUNT, async (f): Promise<FieldList> => {
      // Metadata first: a tree or ref this node lacks is fetched as its listing alone; files come on first open.
      const path = requireStr(f, F.PATH, 'path');
      // A partial mount's VDir is built off the daemon's thread (its start-up set's reads go on meanwhile),
      // begun once the names hash to their head's, beside their check.
      let building: Promise<PrebuiltVDir> | undefined;
      const onNames = (names: Buffer) => {
        building = this.mounts.buildFromNames(path, names);
        building.catch(() => undefined); // (awaited below when used)
      };
      const unused = () => void building?.then((b) => b.vdir.close({ unlink: true }), () => undefined);
      const { tree, from, partial, startup } = await this.resolver()
        .treeToMount(requireStr(f, F.TREE, 'tree'), {
          prefetch: this.lazy.prefetching,
          startup: this.lazy.prefetching ? this.lazy.startupCaps : undefined,
          partial: this.mountConfig.lazyIndex,
          onNames,
        })
        .catch((e: unknown) => {
          unused();
          throw e;
        });
      if (!partial) unused(); // (the full listing after all)
      const prebuilt = partial && (await (building ?? this.mounts.buildFromNames(path, partial.names)));
      const rec = this.mounts.mount(tree, path, f.str(F.PROJECT), { coldListing: from !== 'local', partial: partial && { lazy: partial.lazy, names: partial.names, prebuilt } });
      // Both begin once the answer is out (the tree's blob list, the check of its trace: tens of ms for
      // 100 000 entries), or at once when an open asks first. A cold mount's start-up set was read ahead
      // with its listing (Resolver.treeToMount): its batch takes it from memory.
      const answered = new Promise<void>((r) => setImmediate(r));
      if (from !== 'local' && !partial) this.lazy.early(tree, answered);
      // (a partial mount has no listing to count or prefetch by: its opens are traced, docs/lazy.md "Partial metadata")
      if (!partial) this.lazy.attach(rec, answered); // counts what is local, then prefetches by the tree's trace, in the background
      if (partial) this.partials.mounted(rec, partial, startup, answered);
      this.log(`mount: ${rec.path} <- ${rec.tree}${from === 'local' ? '' : ` (listing from ${from}; files on first open)`}`);
      return [
        [F.TREE, rec.tree],
        [F.SHM_NAME, rec.name],
      ];
    });
    h.set(Msg.UNMOUNT, (f): FieldList => {
      const path = requireStr(f, F.PATH, 'path');
      const tree = this.mounts.recordOf(path)?.tree;
      this.mounts.unmount(path);
      this.partials.unmounted(path, tree);
      this.lazy.detach(path);
      this.log(`unmount: ${path}`);
      return [];
    });
    h.set(Msg.MOUNTS, (): FieldList => this.mounts.records().map((r) => [F.MOUNT_ENTRY, `${r.name}\t${r.path}\t${r.tree}`]));
    registerMountWrites(h, this); // UPPER, LINK, MKDIR, UNLINK, RMDIR, RENAME, SYMLINK, CHMOD, SNAPSHOT
    registerNs(h, { store: this.store, mounts: this.mounts, log: this.log, resolver: () => this.resolver(), ensureTree: (t) => this.ensureTree(t) }); // NSFARM, NSMERGE
    h.set(
      Msg.FETCH,
      fetchHandler(this.store, () => this.resolver(), (root) => this.mounts.recordOf(root)?.tree, this.log, undefined, {
        demandBegins: (digest) => this.lazy.demandBegins(digest),
        served: (root, digest, fetched) => this.lazy.served(root, digest, fetched),
        streams: this.streams,
        metrics: this.metrics,
        renew: (root, rel, digest, ctimeNs) => this.mounts.renewBlobCtime(root, rel, digest, ctimeNs),
        learn: (root, rel) => this.partials.learn(root, rel),
        sizeOf: (root, rel) => this.partials.sizeOf(root, rel),
      }),
    );
    h.set(Msg.OP, operationsHandler({ store: this.store, resolver: () => this.resolver(), metrics: this.metrics, log: this.log, configEnv: NODE_CONFIG_ENV }));
    Cluster.registerHandlers(h, this.cluster); // NODE_JOIN, NODE_LEAVE, NODE_PEERS, NODE_PENALIZE
    h.set(Msg.SHUTDOWN, (): FieldList => {
      setImmediate(() => void this.stop());
      return [];
    });
    return h;
  }
}
