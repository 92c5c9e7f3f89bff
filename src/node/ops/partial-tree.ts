// A tree a lazy mount knows in part (docs/lazy.md "Partial metadata"):
// its names, from the lazy index a signed ref names, and the digests of the
// files opened so far. This is where the index's parts are checked, once,
// as they arrive: the head against the ref's `lazy`, the names against the
// head (and every rule of a tree, in the addon), each piece of 64 digests
// against the head. A part that fails is refused with one log line and the
// caller falls back to the full listing; nothing unverified is kept.
//
// Kept locally (a restarted daemon serves the mount without the network):
// the head and the names blob in the CAS (content-addressed), each verified
// piece of digests in LMDB (state ['lazy-piece', '<head>:<k>']).
import type { Digest } from '../../lib/digest.js';
import { hashBuffer } from '../../lib/digest.js';
import { SingleFlight } from '../../lib/single-flight.js';
import type { Chain } from '../../tiers/chain.js';
import type { StartupCaps } from './resolver.js';
import { chooseStartup } from './startup-choice.js';
import { MAX_TREE_BYTES } from '../../tiers/tier.js';
import { decodeLazyHead, LOCATOR_LOOSE, LOCATOR_RECORD, pieceKey, pieceRange, pieceVerifies, rememberLazyTree, type LazyHead } from '../store/lazy-index.js';
import { checkNamesAsync, NamesIndex, type NamedFile } from '../store/names.js';
import type { Store } from '../store/store.js';

const RECORD = LOCATOR_RECORD;
const EMPTY = Buffer.alloc(0);
/** A names blob read before its head says how long it is stops at a listing's limit (then it is checked against the head). */
const NAMES_MAX = MAX_TREE_BYTES;
const LOOSE = LOCATOR_LOOSE;
/** A traced start reads ahead the pieces of at most this many of its first files. */
const EARLY_ORDINALS = 512;
/** Pieces read by one ranged GET (a start-up set's): at most 32 × 4 KiB… */
const PIECES_PER_READ = 32;
/** …taking the pieces between two wanted ones when at most this many lie between (a request costs more than 32 KiB). */
const PIECE_GAP = 8;

/** A file of the tree, as its names say. */
export type PartialFile = NamedFile;

export class PartialTree {
  /** Verified pieces: the files' raw digests (32 bytes each), and the records they came in (locations unsigned). */
  private readonly pieces = new Map<number, { digests: Buffer; records?: Buffer }>();
  private readonly loading = new SingleFlight<number, { digests: Buffer; records?: Buffer }>();
  /** The names' files by path and ordinal (set by open once the names are checked). */
  private files = new NamesIndex(EMPTY, new Uint32Array(0));
  /** Reads of one pack frame (by its place): a start-up set's files that share a frame wait on one read. */
  private readonly frames = new SingleFlight<string, string | undefined>();
  /** Every digest of the verified pieces (hex). */
  private readonly known = new Set<Digest>();
  /** Blobs read ahead of any open (a traced start's), arrived: what a mount's status counts as prefetched. */
  readonly prefetched = new Set<Digest>();
  /** The bytes of the tree's files, as its names say (set by open). */
  bytes = 0;

  private constructor(
    private readonly store: Store,
    private readonly chain: Chain,
    readonly tree: Digest,
    readonly lazy: Digest,
    readonly head: LazyHead,
    /** The names blob (names.ts), checked (set by open once it is): what the mount publishes, files naming 0…0. */
    public names: Buffer = EMPTY,
  ) {}

  /**
   * The partial tree of `tree` from the lazy index with head `lazy` (the
   * signed ref's): from the local CAS when it is here, else the tiers.
   * undefined, with one log line, when a part is missing or refused.
   */
  static async open(
    store: Store,
    chain: Chain,
    tree: Digest,
    lazy: Digest,
    log: (line: string) => void,
    /** Called as soon as the head is checked: pieces may be read from then on, blobs once the names are here (namesHere). */
    early?: (pt: PartialTree) => void,
    /** Called once the names hash to the head's, before their check: a mount may build its VDir from them meanwhile (the build checks them too). */
    namesVerified?: (names: Buffer) => void,
  ): Promise<PartialTree | undefined> {
    const refuse = (why: string): undefined => {
      log(`lazy index: tree ${tree.slice(0, 12)}…: ${why}; mounting from the full listing`);
      return undefined;
    };
    try {
      const local = store.cas.has(lazy) ? store.cas.readVerified(lazy) : undefined;
      // The names are read alongside the head (their key is the head's digest), and checked once the head is.
      const namesRead = local ? undefined : chain.fetchLazyPart(lazy, { kind: 'names', bytes: NAMES_MAX });
      namesRead?.catch(() => undefined);
      const headBytes = local ?? (await chain.fetchLazyPart(lazy, { kind: 'head' }))?.bytes;
      if (!headBytes) return refuse('no tier holds its head');
      const head = decodeLazyHead(headBytes, lazy, tree);
      if ('problem' in head) return refuse(`its head was refused: ${head.problem}`);
      const pt = new PartialTree(store, chain, tree, lazy, head);
      pt.namesHere = new Promise<void>((r) => (pt.namesArrived = r));
      early?.(pt);
      let names: Buffer | undefined;
      try {
        names = store.cas.has(head.names) ? store.cas.readVerified(head.names) : (await (namesRead ?? chain.fetchLazyPart(lazy, { kind: 'names', bytes: head.namesBytes })))?.bytes;
      } finally {
        pt.namesArrived();
      }
      if (!names) return refuse('no tier holds its names');
      if (names.length !== head.namesBytes || hashBuffer(names) !== head.names) return refuse('its names blob was refused: it does not hash to the head\'s');
      namesVerified?.(names);
      try {
        const { summary, files } = await checkNamesAsync(names);
        if (summary.files !== head.files) return refuse(`its names list ${summary.files} files, its head ${head.files}`);
        pt.names = names;
        pt.files = files;
        pt.bytes = summary.bytes;
      } catch (e) {
        return refuse(`its names blob was refused: ${(e as Error).message}`);
      }
      // Kept (verified by digest as they are stored): a restarted daemon reopens it without the network.
      if (!store.cas.has(lazy)) store.admission.buffer(headBytes, 'lazy index', lazy);
      if (!store.cas.has(head.names)) store.admission.buffer(names, 'lazy index', head.names);
      rememberLazyTree(store.meta, tree, { lazy, names: head.names });
      return pt;
    } catch (e) {
      return refuse(`reading it failed: ${(e as Error).message}`);
    }
  }

  /**
   * A traced start's first files, begun before the names are here (the
   * head is): their pieces at once, then (once the names are here) their
   * blobs where the records place them
   * (sizes from the records: what is past `caps.bytes` is left for later),
   * verified into the CAS, nothing published (the mount does that once it
   * exists: partial-starts.ts). The large ones among them (up to
   * `caps.largeBytes`) are fetched alone at once, not waited for: one kept
   * on its own by `fetchLoose` (the resolver's fetch, which an open or the
   * start joins), one in a frame as fetchOrdinal reads it.
   */
  prefetchEarly(ordinals: readonly number[], caps: StartupCaps, fetchLoose: (digest: Digest, size: number) => Promise<unknown>): Promise<void> {
    this.early = this.readEarly(ordinals, caps, fetchLoose).catch(() => undefined);
    return this.early;
  }

  /**
   * Settles once the names have arrived (or failed to): the early reads of
   * blobs wait for it. Begun at once they took the origin from the names
   * the mount waits for (~70 ms later on s3rver); the pieces are small.
   */
  namesHere: Promise<void> = Promise.resolve();
  private namesArrived = (): void => undefined;

  /** What prefetchEarly is reading (the start-up set waits for it rather than read the same frames again). */
  early: Promise<void> = Promise.resolve();

  private async readEarly(ordinals: readonly number[], caps: StartupCaps, fetchLoose: (digest: Digest, size: number) => Promise<unknown>): Promise<void> {
    const first = ordinals.slice(0, EARLY_ORDINALS);
    await Promise.all([this.loadPieces(first), this.namesHere]);
    // Each file's place as its record gives it (its piece checked); empty files and small ones kept on their own are not the set's.
    const placed = first.flatMap((o) => {
      const k = Math.floor(o / this.head.pieceFiles);
      const piece = this.pieces.get(k);
      if (!piece?.records) return [];
      const i = o - k * this.head.pieceFiles;
      const record = piece.records.subarray(RECORD * i, RECORD * (i + 1));
      const size = Number(record.readBigUInt64BE(56));
      const loose = record.readUInt32BE(32) === LOOSE;
      if (size === 0 || (loose && size < caps.blobMax)) return [];
      return [{ digest: piece.digests.toString('hex', 32 * i, 32 * i + 32), size, record, loose }];
    });
    // (the start-up set's own choice, partial-starts.ts: local blobs count too)
    const { small, large } = chooseStartup(placed, (p) => p.size, caps);
    for (const p of large) {
      if (this.store.cas.has(p.digest)) continue;
      const fetching = p.loose ? fetchLoose(p.digest, p.size) : this.fetchInFrame(p.digest, p.size, p.record);
      void fetching.then(() => this.store.cas.has(p.digest) && this.prefetched.add(p.digest)).catch(() => undefined); // (a failure: the start or the open fetches it)
    }
    await this.fetchWanted(new Map(small.filter((p) => !this.store.cas.has(p.digest)).map((p) => [p.digest, { size: p.size, record: p.record }])));
  }

  /** Blob `digest`, in the pack frame `record` places it in: one read per frame (the frame's other blobs admitted beside; another file of it asked meanwhile joins the read). */
  private fetchInFrame(digest: Digest, size: number, record: Buffer): Promise<string | undefined> {
    return this.frames.run(record.toString('hex', 32, 56), () => this.chain.fetchLocated(this.tree, digest, size, record)).result;
  }

  /** Whether `digest` is the blob of a file of the tree whose piece was checked here. */
  knows(digest: Digest): boolean {
    return this.known.has(digest);
  }

  /** The file at `rel`, or undefined when the names list no file there. */
  fileAt(rel: string): PartialFile | undefined {
    return this.files.fileAt(rel);
  }

  /** The digest of file `ordinal`, from its piece (fetched and checked once, kept). */
  async digestOf(ordinal: number): Promise<Digest> {
    const k = Math.floor(ordinal / this.head.pieceFiles);
    const piece = await this.piece(k);
    const i = ordinal - k * this.head.pieceFiles;
    return piece.digests.toString('hex', 32 * i, 32 * i + 32);
  }

  /** File `ordinal` of the tree, as its names say, and its path. */
  fileOf(ordinal: number): (PartialFile & { rel: string }) | undefined {
    return this.files.fileOf(ordinal);
  }

  /**
   * The digest of the file at `rel`, and its blob in the local CAS
   * (verified) from the place its locator record gives; a blob kept on its
   * own (`loose`: large) is left for the open to fetch by digest (it may
   * stream). undefined when `rel` is no file of the tree; throws when its
   * piece cannot be had.
   */
  async fetchFile(rel: string): Promise<{ digest: Digest; file: PartialFile; loose: boolean; wasLocal: boolean } | undefined> {
    const file = this.fileAt(rel);
    return file && this.fetchOrdinal(file.ordinal);
  }

  /** fetchFile of file `ordinal`; `wasLocal`: its blob was in the CAS already. */
  async fetchOrdinal(ordinal: number): Promise<{ digest: Digest; file: PartialFile; rel: string; loose: boolean; wasLocal: boolean } | undefined> {
    const file = this.fileOf(ordinal);
    if (!file) return undefined;
    const k = Math.floor(file.ordinal / this.head.pieceFiles);
    let piece = await this.piece(k);
    const i = file.ordinal - k * this.head.pieceFiles;
    const digest = piece.digests.toString('hex', 32 * i, 32 * i + 32);
    // (a piece kept in LMDB has no places: read again, and checked again, for a blob not here)
    if (!this.store.cas.has(digest) && file.size > 0 && !piece.records) piece = await this.piece(k, true);
    const loose = piece.records?.readUInt32BE(RECORD * i + 32) === LOOSE;
    const wasLocal = file.size === 0 || this.store.cas.has(digest);
    // (a blob kept on its own, large, is fetched by its digest when the program opens it: it may stream)
    if (!this.store.cas.has(digest) && file.size > 0 && piece.records && !loose) {
      const record = piece.records.subarray(RECORD * i, RECORD * (i + 1));
      // (the record's own size must be the names' before its place is used; a wrong one is read as no place)
      if (Number(record.readBigUInt64BE(56)) === file.size) {
        // One read per frame: the other blobs it holds are admitted beside the one asked for.
        await this.fetchInFrame(digest, file.size, record);
        if (!this.store.cas.has(digest)) await this.chain.fetchLocated(this.tree, digest, file.size, record);
      }
    }
    return { digest, file, rel: file.rel, loose, wasLocal };
  }

  /**
   * Where file `ordinal`'s blob is, when its piece was read here with its
   * places (loadPieces): its digest and locator record (the record's size
   * checked against the names'); undefined otherwise.
   */
  placeOf(ordinal: number): { digest: Digest; record: Buffer; file: PartialFile & { rel: string }; loose: boolean } | undefined {
    const file = this.fileOf(ordinal);
    const k = Math.floor(ordinal / this.head.pieceFiles);
    const piece = this.pieces.get(k);
    if (!file || !piece?.records) return undefined;
    const i = ordinal - k * this.head.pieceFiles;
    const record = piece.records.subarray(RECORD * i, RECORD * (i + 1));
    if (Number(record.readBigUInt64BE(56)) !== file.size) return undefined;
    return { digest: piece.digests.toString('hex', 32 * i, 32 * i + 32), record, file, loose: record.readUInt32BE(32) === LOOSE };
  }

  /** Many files' blobs where their places say, together (Chain.fetchManyLocated: one read per pack frame), verified. */
  async fetchPlaced(places: readonly { digest: Digest; record: Buffer; file: PartialFile }[]): Promise<void> {
    const want = new Map(places.filter((p) => p.file.size > 0 && !this.store.cas.has(p.digest)).map((p) => [p.digest, { size: p.file.size, record: p.record }]));
    await this.fetchWanted(want);
  }

  /** A start-up set's blobs by their places, together; those that arrived count as prefetched. */
  private async fetchWanted(want: Map<Digest, { size: number; record: Buffer }>): Promise<void> {
    if (want.size === 0) return;
    await this.chain.fetchManyLocated(this.tree, want, () => undefined);
    for (const d of want.keys()) if (this.store.cas.has(d)) this.prefetched.add(d);
  }

  /**
   * The pieces of `ordinals`' digests, read together: runs of nearby
   * pieces (with the few between them) by one ranged GET each, each piece
   * checked on its own. What fails is left for the files' own reads.
   */
  async loadPieces(ordinals: readonly number[]): Promise<void> {
    const ks = [...new Set(ordinals.map((o) => Math.floor(o / this.head.pieceFiles)))].filter((k) => !this.pieces.has(k) && k < this.head.pieces.length).sort((a, b) => a - b);
    const runs: [number, number][] = [];
    for (const k of ks) {
      const last = runs.at(-1);
      if (last && k - last[1] <= PIECE_GAP && k - last[0] < PIECES_PER_READ) last[1] = k + 1;
      else runs.push([k, k + 1]);
    }
    await Promise.all(
      runs.map(async ([from, to]) => {
        const first = pieceRange(this.head, from).first;
        const end = pieceRange(this.head, to - 1).end;
        const got = await this.chain.fetchLazyPart(this.lazy, { kind: 'records', first, end }).catch(() => undefined);
        if (!got || got.bytes.length !== RECORD * (end - first)) return;
        for (let k = from; k < to; k++) {
          const r = pieceRange(this.head, k);
          const records = got.bytes.subarray(RECORD * (r.first - first), RECORD * (r.end - first));
          const digests = this.digestsOf(records, r.end - r.first);
          if (!pieceVerifies(this.head, k, this.split(digests, r.end - r.first))) continue; // (its files' own reads say so)
          void this.store.meta.state.put(pieceKey(this.lazy, k), digests);
          this.keep(k, { digests, records });
        }
      }),
    );
  }

  private digestsOf(records: Buffer, n: number): Buffer {
    const digests = Buffer.alloc(32 * n);
    for (let i = 0; i < n; i++) records.copy(digests, 32 * i, RECORD * i, RECORD * i + 32);
    return digests;
  }

  private split(digests: Buffer, n: number): Buffer[] {
    return Array.from({ length: n }, (_, i) => digests.subarray(32 * i, 32 * i + 32));
  }

  private async piece(k: number, places = false): Promise<{ digests: Buffer; records?: Buffer }> {
    const had = this.pieces.get(k);
    if (had && (had.records || !places)) return had;
    return this.loading.run(k, async () => {
      const key = pieceKey(this.lazy, k);
      const kept = this.store.meta.state.get(key) as Uint8Array | undefined;
      const { first, end } = pieceRange(this.head, k);
      const split = (digests: Buffer) => Array.from({ length: end - first }, (_, i) => digests.subarray(32 * i, 32 * i + 32));
      if (!places && kept && pieceVerifies(this.head, k, split(Buffer.from(kept)))) return this.keep(k, { digests: Buffer.from(kept) });
      if (k < 0 || k >= this.head.pieces.length) throw new Error(`no piece ${k} in the lazy index of tree ${this.tree}`);
      const got = await this.chain.fetchLazyPart(this.lazy, { kind: 'records', first, end });
      if (!got) throw new Error(`no tier holds piece ${k} of the lazy index of tree ${this.tree}`);
      const records = got.bytes;
      const digests = Buffer.alloc(32 * (end - first));
      if (records.length === RECORD * (end - first)) for (let i = 0; i < end - first; i++) records.copy(digests, 32 * i, RECORD * i, RECORD * i + 32);
      if (records.length !== RECORD * (end - first) || !pieceVerifies(this.head, k, split(digests))) {
        throw new Error(`piece ${k} of the lazy index of tree ${this.tree} from ${got.tier} was refused: its digests are not the ones the signed head names`);
      }
      if (!kept) void this.store.meta.state.put(key, digests);
      return this.keep(k, { digests, records });
    }).result;
  }

  private keep(k: number, p: { digests: Buffer; records?: Buffer }): { digests: Buffer; records?: Buffer } {
    this.pieces.set(k, p);
    for (let i = 0; i < p.digests.length; i += 32) this.known.add(p.digests.toString('hex', i, i + 32));
    return p;
  }
}
