// The S3 tier: any S3-compatible store (AWS, MinIO, R2, s3rver) through
// @aws-sdk/client-s3, loaded on first use.
//
// Layout under the bucket (and optional prefix), see docs/tiers.md:
//   blobs/<digest>          one blob (trees, and blobs of at least looseBlobBytes; multipart when large)
//   packs/<tree>-<rand>.pack[.zst]  an archive (docs/archive-format.md) of small blobs, zstd-compressed by default
//   packs/<tree>-<rand>.idx  its index: where each blob is in the pack (one ranged GET reads one blob)
//   trees/<tree>.json       the pack manifest: which packs hold the tree's small blobs
//   trees/<tree>.zst        the tree blob again, zstd-compressed (a lazy mount reads this; older trees lack it)
//   lazy/<head>[.names.zst|.loc]  the tree's lazy index (docs/tree-format.md): head, names, locator
//   refs/<name>             {"tree","times"?,"lazy"?,"updatedAt"} (signed: docs/security.md)
//   outboards/<digest>      a large blob's Bao outboard (docs/bao.md), written before the blob: a lazy mount streams it verified
import type { Digest } from '../../lib/digest.js';
import { bool, int, object, oneOf, size, text, url, type ConfigSection } from '../../node/config/schema.js';
import { TIER_COUNTERS as M, type Metrics } from '../../lib/metrics.js';
import { mapLimit } from '../../lib/queue.js';
import { baoOutboardFile } from '../../lib/bao.js';
import { S3Objects } from './objects.js';
import { S3Packs } from './packs.js';
import { readStoredRef, storedRef, type RefCodec } from '../ref-trust.js';
import { refTargetOf, type ArchivePart, type BlobBody, type BlobSource, type LazyPart, type PrepareOptions, type PushResult, type RefInfo, type RefTarget, type Tier, type TierFactory, type TreePush } from '../tier.js';

export interface S3Config {
  bucket: string;
  endpoint?: string;
  region: string;
  prefix: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  forcePathStyle?: boolean;
  /** Multipart part size (and the size above which uploads are multipart). */
  partSize: number;
  /** Blobs this big or bigger are stored as their own objects, not in packs. */
  looseBlobBytes: number;
  /** How new packs are stored: zstd-compressed (default, when libzstd is present) or as is. */
  compression: 'zstd' | 'none';
  /** A blob read by range out of a pack brings the other blobs of its zstd frame along (they crossed the network anyway). */
  neighbors: boolean;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
}

/** S3's bucket naming rules, as one message. */
export function bucketProblem(name: string): string | undefined {
  const rules = '3-63 characters of a-z, 0-9, "." and "-", starting and ending with a letter or digit (e.g. vrift-cache)';
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) || name.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(name)) {
    return `${JSON.stringify(name)} is not a valid bucket name: ${rules}`;
  }
  return undefined;
}

const section: ConfigSection<S3Config | undefined> = {
  key: 's3',
  schema: object(
    {
      bucket: text({ example: 'vrift-cache', check: bucketProblem }),
      endpoint: url({ example: 'http://127.0.0.1:9000', protocols: ['http:', 'https:'] }).optional(),
      region: text({ example: 'us-east-1' }).default('us-east-1'),
      prefix: text({ example: 'ci/', check: (p) => (p.startsWith('/') ? 'must not start with "/"' : undefined) })
        .map((p) => (p.endsWith('/') ? p : `${p}/`))
        .optional()
        .map((p) => p ?? ''),
      accessKeyId: text({ example: 'AKIA…' }).optional(),
      secretAccessKey: text({ example: '…' }).optional(),
      sessionToken: text({ example: '…' }).optional(),
      forcePathStyle: bool().optional(),
      partSize: size({ example: '8M', min: 5 << 20, max: 5 * 1024 ** 3 }).default(8 << 20),
      looseBlobBytes: size({ example: '8M', min: 1 }).default(8 << 20),
      compression: oneOf(['zstd', 'none'] as const).default('zstd'),
      neighbors: bool().default(true),
      connectTimeoutMs: int({ example: '3000', min: 1, max: 600_000 }).default(3000),
      requestTimeoutMs: int({ example: '120000', min: 1, max: 3_600_000 }).default(120_000),
    },
    {
      absent: 'undefined',
      rules: (c) =>
        (c.accessKeyId === undefined) === (c.secretAccessKey === undefined)
          ? []
          : [{ path: [], message: 'set both accessKeyId and secretAccessKey (VRIFT_S3_ACCESS_KEY_ID, VRIFT_S3_SECRET_ACCESS_KEY), or neither to use the AWS default credentials' }],
    },
  ),
  env: {
    VRIFT_S3_BUCKET: 'bucket',
    VRIFT_S3_ENDPOINT: 'endpoint',
    VRIFT_S3_REGION: 'region',
    VRIFT_S3_PREFIX: 'prefix',
    VRIFT_S3_ACCESS_KEY_ID: 'accessKeyId',
    VRIFT_S3_SECRET_ACCESS_KEY: 'secretAccessKey',
    VRIFT_S3_SESSION_TOKEN: 'sessionToken',
    VRIFT_S3_FORCE_PATH_STYLE: 'forcePathStyle',
    VRIFT_S3_PART_SIZE: 'partSize',
    VRIFT_S3_LOOSE_BLOB: 'looseBlobBytes',
    VRIFT_S3_COMPRESSION: 'compression',
    VRIFT_S3_NEIGHBORS: 'neighbors',
  },
};

/** Blobs from this size on get an outboard (1/256 of their size) next to them: reads of them can stream. */
export const OUTBOARD_MIN_BYTES = 1 << 20;

export class S3Tier implements Tier {
  readonly name = 's3';
  readonly writable = true;
  readonly parallelism = 16;
  readonly looseBlobBytes: number;
  readonly objects: S3Objects;
  private readonly packs: S3Packs;

  /** @param refs signs the refs this tier writes and checks those it reads (without one: unsigned records, as tests build tiers alone). */
  constructor(cfg: S3Config, metrics?: Metrics, private readonly refs?: RefCodec) {
    // (one labels object: counted per chunk received, and Metrics keeps the key built per labels object)
    const labels = { tier: 's3' };
    this.objects = new S3Objects(cfg, (direction, bytes) => metrics?.inc(direction === 'in' ? M.wireIn : M.wireOut, labels, bytes));
    this.looseBlobBytes = cfg.looseBlobBytes;
    this.packs = new S3Packs(this.objects);
  }

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    const found = await mapLimit(digests, this.parallelism, (d) => this.objects.exists(`blobs/${d}`));
    return new Set(digests.filter((_, i) => found[i]));
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    return this.objects.get(`blobs/${digest}`);
  }

  async put(digest: Digest, source: BlobSource): Promise<void> {
    // The outboard first: a blob present in S3 then always has one (when it was put from a local file).
    if (source.path && source.size >= OUTBOARD_MIN_BYTES) {
      const ob = await baoOutboardFile(source.path).catch(() => undefined);
      if (ob && ob.digest === digest && ob.size === source.size) await this.objects.putBuffer(`outboards/${digest}`, ob.outboard);
    }
    if (source.size < this.objects.cfg.partSize) await this.objects.putBuffer(`blobs/${digest}`, await source.readAll());
    else await this.objects.upload(`blobs/${digest}`, source.open());
  }

  async warm(): Promise<void> {
    await this.objects.warm();
  }

  async getOutboard(digest: Digest): Promise<Buffer | undefined> {
    return this.objects.getBuffer(`outboards/${digest}`);
  }

  async getRef(name: string): Promise<RefTarget | undefined> {
    const v = await this.objects.getText(`refs/${name}`);
    return v === undefined ? undefined : refTargetOf(this.parseRef(name, v));
  }

  async setRef(name: string, target: RefTarget): Promise<void> {
    await this.objects.putBuffer(`refs/${name}`, Buffer.from(storedRef(this.refs, name, target)), 'application/json');
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    // Newest objects first (LastModified has 1 s resolution; the ref's own updatedAt refines it):
    // the `limit` newest, and any others of the same second as the last of them.
    const all = (await this.objects.list(`refs/${prefix}`, 10_000)).sort((a, b) => b.modified - a.modified);
    const cut = all[Math.min(limit, all.length) - 1]?.modified ?? 0;
    const objs = all.filter((o, i) => i < limit || o.modified >= cut);
    const refs = await mapLimit(objs, this.parallelism, async (o) => {
      const name = o.rel.slice('refs/'.length);
      const v = await this.objects.getText(o.rel);
      try {
        const ref = v === undefined ? undefined : this.parseRef(name, v);
        return ref && { ...ref, updatedAt: ref.updatedAt || o.modified };
      } catch {
        return undefined; // a damaged ref is not listed (reading it by name reports it)
      }
    });
    return refs
      .filter((r): r is RefInfo => r !== undefined)
      .sort((a, b) => b.updatedAt - a.updatedAt)
      .slice(0, limit);
  }

  /** The ref a stored record names; undefined when it is not to be trusted (refs: the log says why). */
  private parseRef(name: string, v: string): RefInfo | undefined {
    return readStoredRef(this.refs, 's3', name, v, 'save the ref again, or delete the object refs/<name>');
  }

  getInTree(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    return this.packs.getInTree(tree, digest);
  }

  async getRange(digest: Digest, offset: number, length: number): Promise<BlobBody | undefined> {
    const body = await this.objects.getRange(`blobs/${digest}`, offset, offset + length);
    return body && { stream: body.stream, size: body.size };
  }

  getManyInTree(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.packs.getManyInTree(tree, digests, onBlob);
  }

  prepareTree(tree: Digest, opts?: PrepareOptions): Promise<void> {
    return this.packs.prepareTree(tree, opts);
  }

  warmInTree(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void> {
    return this.packs.warmInTree(tree, digests, maxBytes, blobMax);
  }

  getTreeBlob(tree: Digest): Promise<BlobBody | undefined> {
    return this.packs.getTreeBlob(tree);
  }

  getLazyPart(head: Digest, part: LazyPart): Promise<Buffer | undefined> {
    return this.packs.lazy.part(head, part);
  }

  getManyLocated(tree: Digest, wants: readonly { digest: Digest; record: Buffer }[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.packs.lazy.many(tree, wants, onBlob);
  }

  getLocated(tree: Digest, digest: Digest, record: Buffer): Promise<BlobBody | undefined> {
    return this.packs.lazy.located(tree, digest, record, Number(record.readBigUInt64BE(56)));
  }

  fetchTree(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined> {
    return this.packs.fetch(tree, want);
  }

  pushTree(push: TreePush): Promise<PushResult> {
    return this.packs.push(push, (d, src) => this.put(d, src), (ds) => this.has(ds));
  }

  async close(): Promise<void> {
    this.objects.close();
  }
}


export const s3Tier: TierFactory<S3Config | undefined> = {
  name: 's3',
  config: section,
  create: (ctx, cfg) => (cfg ? new S3Tier(cfg, ctx.metrics, ctx.refs) : undefined),
};
