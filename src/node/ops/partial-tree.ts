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
import { decodeLazyHead, pieceKey, pieceRange, pieceVerifies, rememberLazyTree, type LazyHead } from '../store/lazy-index.js';
import { listingOfNames } from '../store/names.js';
import type { Store } from '../store/store.js';
import { checkEncodedTree } from '../store/tree.js';

const RECORD = 64;
/** A locator record's pack for a blob kept on its own (src/tiers/s3/locator.ts). */
const LOOSE = 0xffffffff;
const FILE_MODE_EXEC = 0o755;

/** A file of the tree, as its names say. */
export interface PartialFile {
  ordinal: number;
  size: number;
  exec: boolean;
}

export class PartialTree {
  /** Verified pieces: the files' raw digests (32 bytes each), and the records they came in (locations unsigned). */
  private readonly pieces = new Map<number, { digests: Buffer; records?: Buffer }>();
  private readonly loading = new SingleFlight<number, { digests: Buffer; records?: Buffer }>();
  private files?: Map<string, PartialFile>;
  /** Every digest of the verified pieces (hex). */
  private readonly known = new Set<Digest>();

  private constructor(
    private readonly store: Store,
    private readonly chain: Chain,
    readonly tree: Digest,
    readonly lazy: Digest,
    readonly head: LazyHead,
    /** The names as a tree encoding whose files name 0…0 (names.ts listingOfNames), checked. */
    readonly listing: Buffer,
  ) {}

  /**
   * The partial tree of `tree` from the lazy index with head `lazy` (the
   * signed ref's): from the local CAS when it is here, else the tiers.
   * undefined, with one log line, when a part is missing or refused.
   */
  static async open(store: Store, chain: Chain, tree: Digest, lazy: Digest, log: (line: string) => void): Promise<PartialTree | undefined> {
    const refuse = (why: string): undefined => {
      log(`lazy index: tree ${tree.slice(0, 12)}…: ${why}; mounting from the full listing`);
      return undefined;
    };
    try {
      const headBytes = store.cas.has(lazy) ? store.cas.readVerified(lazy) : (await chain.fetchLazyPart(lazy, { kind: 'head' }))?.bytes;
      if (!headBytes) return refuse('no tier holds its head');
      const head = decodeLazyHead(headBytes, lazy, tree);
      if ('problem' in head) return refuse(`its head was refused: ${head.problem}`);
      const names = store.cas.has(head.names) ? store.cas.readVerified(head.names) : (await chain.fetchLazyPart(lazy, { kind: 'names', bytes: head.namesBytes }))?.bytes;
      if (!names) return refuse('no tier holds its names');
      if (names.length !== head.namesBytes || hashBuffer(names) !== head.names) return refuse('its names blob was refused: it does not hash to the head\'s');
      let listing: Buffer;
      try {
        listing = listingOfNames(names);
        const summary = checkEncodedTree(listing);
        if (summary.files !== head.files) return refuse(`its names list ${summary.files} files, its head ${head.files}`);
      } catch (e) {
        return refuse(`its names blob was refused: ${(e as Error).message}`);
      }
      // Kept (verified by digest as they are stored): a restarted daemon reopens it without the network.
      if (!store.cas.has(lazy)) store.admission.buffer(headBytes, 'lazy index', lazy);
      if (!store.cas.has(head.names)) store.admission.buffer(names, 'lazy index', head.names);
      rememberLazyTree(store.meta, tree, { lazy, names: head.names });
      return new PartialTree(store, chain, tree, lazy, head, listing);
    } catch (e) {
      return refuse(`reading it failed: ${(e as Error).message}`);
    }
  }

  /** Whether `digest` is the blob of a file of the tree whose piece was checked here. */
  knows(digest: Digest): boolean {
    return this.known.has(digest);
  }

  /** The file at `rel`, or undefined when the names list no file there. */
  fileAt(rel: string): PartialFile | undefined {
    this.files ??= this.index();
    return this.files.get(rel);
  }

  /** Path → file, from the listing (once, at the first open: ~50 ms for 100 000 files). */
  private index(): Map<string, PartialFile> {
    const out = new Map<string, PartialFile>();
    const b = this.listing;
    let at = b.indexOf(0x0a) + 1;
    let ordinal = 0;
    while (at < b.length) {
      const kind = b[at]!;
      const sp1 = b.indexOf(0x20, at + 2);
      const sp2 = b.indexOf(0x20, sp1 + 1);
      const sp3 = b.indexOf(0x20, sp2 + 1);
      const nul = b.indexOf(0, sp3 + 1);
      let end = nul + 1;
      if (kind === 0x6c /* l */) end = b.indexOf(0, end) + 1;
      if (kind === 0x66 /* f */) {
        const mode = parseInt(b.toString('latin1', at + 2, sp1), 8);
        out.set(b.toString('utf8', sp3 + 1, nul), { ordinal: ordinal++, size: Number(b.toString('latin1', sp1 + 1, sp2)), exec: mode === FILE_MODE_EXEC });
      }
      at = end;
    }
    return out;
  }

  /** The digest of file `ordinal`, from its piece (fetched and checked once, kept). */
  async digestOf(ordinal: number): Promise<Digest> {
    const k = Math.floor(ordinal / this.head.pieceFiles);
    const piece = await this.piece(k);
    const i = ordinal - k * this.head.pieceFiles;
    return piece.digests.toString('hex', 32 * i, 32 * i + 32);
  }

  /**
   * The digest of the file at `rel`, and its blob in the local CAS
   * (verified) from the place its locator record gives; a blob kept on its
   * own (`loose`: large) is left for the open to fetch by digest (it may
   * stream). undefined when `rel` is no file of the tree; throws when its
   * piece cannot be had.
   */
  async fetchFile(rel: string): Promise<{ digest: Digest; file: PartialFile; loose: boolean } | undefined> {
    const file = this.fileAt(rel);
    if (!file) return undefined;
    const k = Math.floor(file.ordinal / this.head.pieceFiles);
    let piece = await this.piece(k);
    const i = file.ordinal - k * this.head.pieceFiles;
    const digest = piece.digests.toString('hex', 32 * i, 32 * i + 32);
    // (a piece kept in LMDB has no places: read again, and checked again, for a blob not here)
    if (!this.store.cas.has(digest) && file.size > 0 && !piece.records) piece = await this.piece(k, true);
    const loose = piece.records?.readUInt32BE(RECORD * i + 32) === LOOSE;
    // (a blob kept on its own, large, is fetched by its digest when the program opens it: it may stream)
    if (!this.store.cas.has(digest) && file.size > 0 && piece.records && !loose) {
      const record = piece.records.subarray(RECORD * i, RECORD * (i + 1));
      // (the record's own size must be the names' before its place is used; a wrong one is read as no place)
      if (Number(record.readBigUInt64BE(56)) === file.size) await this.chain.fetchLocated(this.tree, digest, file.size, record);
    }
    return { digest, file, loose };
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
