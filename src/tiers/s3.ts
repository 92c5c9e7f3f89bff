// The S3 tier: any S3-compatible store (AWS, MinIO, R2, s3rver) through
// @aws-sdk/client-s3, loaded on first use.
//
// Layout under the bucket (and optional prefix), see docs/tiers.md:
//   blobs/<digest>          one blob (trees, and blobs of at least looseBlobBytes; multipart when large)
//   packs/<tree>-<rand>.pack  an archive (docs/archive-format.md) of small blobs
//   trees/<tree>.json       the pack manifest: which packs hold the tree's small blobs
//   refs/<name>             {"tree","updatedAt"}
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { isDigest, type Digest } from '../lib/digest.js';
import { bool, int, size, text, url, type ConfigSection } from '../node/config-schema.js';
import { mapLimit } from './queue.js';
import { S3Packs } from './s3-packs.js';
import { isTierError, TierError, type ArchivePart, type BlobBody, type BlobSource, type PushResult, type RefInfo, type Tier, type TierFactory, type TreePush } from './tier.js';

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
  schema: z
    .strictObject({
      bucket: text({ example: 'vrift-cache', check: bucketProblem }),
      endpoint: url({ example: 'http://127.0.0.1:9000', protocols: ['http:', 'https:'] }).optional(),
      region: text({ example: 'us-east-1' }).default('us-east-1'),
      prefix: text({ example: 'ci/', check: (p) => (p.startsWith('/') ? 'must not start with "/"' : undefined) })
        .transform((p) => (p.endsWith('/') ? p : `${p}/`))
        .optional()
        .transform((p) => p ?? ''),
      accessKeyId: text({ example: 'AKIA…' }).optional(),
      secretAccessKey: text({ example: '…' }).optional(),
      sessionToken: text({ example: '…' }).optional(),
      forcePathStyle: bool().optional(),
      partSize: size({ example: '8M', min: 5 << 20, max: 5 * 1024 ** 3 }).default(8 << 20),
      looseBlobBytes: size({ example: '8M', min: 1 }).default(8 << 20),
      connectTimeoutMs: int({ example: '3000', min: 1, max: 600_000 }).default(3000),
      requestTimeoutMs: int({ example: '120000', min: 1, max: 3_600_000 }).default(120_000),
    })
    .refine((c) => (c.accessKeyId === undefined) === (c.secretAccessKey === undefined), {
      message: 'set both accessKeyId and secretAccessKey (VRIFT_S3_ACCESS_KEY_ID, VRIFT_S3_SECRET_ACCESS_KEY), or neither to use the AWS default credentials',
    })
    .optional() as z.ZodType<S3Config | undefined>,
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
  },
};

type Sdk = typeof import('@aws-sdk/client-s3');

/** The few object operations the tier and its packs need, with errors already mapped. */
export class S3Objects {
  private sdk: Sdk | undefined;
  private s3: S3Client | undefined;
  private probe: Promise<void> | undefined;
  readonly where: string;

  constructor(readonly cfg: S3Config) {
    this.where = `${cfg.endpoint ?? `s3.${cfg.region}.amazonaws.com`} bucket ${cfg.bucket}`;
  }

  key(rel: string): string {
    return `${this.cfg.prefix}${rel}`;
  }

  /** Body of an object, or undefined when there is none. */
  async get(rel: string): Promise<{ stream: Readable; size?: number } | undefined> {
    const { sdk, s3 } = await this.client();
    try {
      const r = await s3.send(new sdk.GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(rel) }));
      return { stream: r.Body as Readable, size: r.ContentLength };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.fail(e, `reading ${rel}`);
    }
  }

  async getText(rel: string): Promise<string | undefined> {
    const body = await this.get(rel);
    if (!body) return undefined;
    const chunks: Buffer[] = [];
    try {
      for await (const c of body.stream as AsyncIterable<Buffer>) chunks.push(c);
    } catch (e) {
      throw this.fail(e, `reading ${rel}`);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async exists(rel: string): Promise<boolean> {
    const { sdk, s3 } = await this.client();
    try {
      await s3.send(new sdk.HeadObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(rel) }));
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw this.fail(e, `checking ${rel}`);
    }
  }

  async putBuffer(rel: string, body: Buffer, contentType = 'application/octet-stream'): Promise<void> {
    const { sdk, s3 } = await this.client();
    try {
      await s3.send(new sdk.PutObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(rel), Body: body, ContentLength: body.byteLength, ContentType: contentType }));
    } catch (e) {
      throw this.fail(e, `writing ${rel}`);
    }
  }

  /** Streams an upload of unknown length: multipart once it passes one part. */
  async upload(rel: string, body: Readable): Promise<void> {
    const { s3 } = await this.client();
    const { Upload } = await import('@aws-sdk/lib-storage');
    const up = new Upload({ client: s3, params: { Bucket: this.cfg.bucket, Key: this.key(rel), Body: body }, partSize: this.cfg.partSize, queueSize: 4, leavePartsOnError: false });
    try {
      await up.done();
    } catch (e) {
      body.destroy();
      throw this.fail(e, `uploading ${rel}`);
    }
  }

  async list(relPrefix: string, max: number): Promise<{ rel: string; modified: number }[]> {
    const { sdk, s3 } = await this.client();
    const out: { rel: string; modified: number }[] = [];
    let token: string | undefined;
    do {
      let r;
      try {
        r = await s3.send(new sdk.ListObjectsV2Command({ Bucket: this.cfg.bucket, Prefix: this.key(relPrefix), ContinuationToken: token }));
      } catch (e) {
        throw this.fail(e, `listing ${relPrefix}`);
      }
      for (const o of r.Contents ?? []) out.push({ rel: o.Key!.slice(this.cfg.prefix.length), modified: o.LastModified?.getTime() ?? 0 });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token && out.length < max);
    return out;
  }

  close(): void {
    this.s3?.destroy();
    this.s3 = undefined;
  }

  private async client(): Promise<{ sdk: Sdk; s3: S3Client }> {
    if (!this.sdk || !this.s3) {
      // We support Node 20; the SDK's notice about its own future plans is not for our users.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      this.sdk = await import('@aws-sdk/client-s3');
      const c = this.cfg;
      this.s3 = new this.sdk.S3Client({
        region: c.region,
        ...(c.endpoint ? { endpoint: c.endpoint } : {}),
        forcePathStyle: c.forcePathStyle ?? c.endpoint !== undefined,
        ...(c.accessKeyId ? { credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey!, sessionToken: c.sessionToken } } : {}),
        // Checksums only where S3 requires them: many S3-compatible servers reject the newer trailers.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: 1, // the chain retries (bounded) and trips the breaker
        requestHandler: { connectionTimeout: c.connectTimeoutMs, requestTimeout: c.requestTimeoutMs, httpAgent: { keepAlive: true, maxSockets: 32 } },
      });
    }
    // A missing bucket answers HEAD object with a plain 404, exactly like a
    // missing blob; ask once about the bucket so a typo is an error, not a miss.
    this.probe ??= this.probeBucket().catch((e: unknown) => {
      this.probe = undefined;
      throw e;
    });
    await this.probe;
    return { sdk: this.sdk, s3: this.s3 };
  }

  private async probeBucket(): Promise<void> {
    try {
      await this.s3!.send(new this.sdk!.HeadBucketCommand({ Bucket: this.cfg.bucket }));
    } catch (e) {
      if (isNotFound(e)) throw this.fail({ name: 'NoSuchBucket' }, 'opening the bucket');
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status !== 403) throw this.fail(e, 'opening the bucket');
      // A HEAD carries no error body, so a 403 does not say why (unknown key? bad
      // secret? no s3:ListBucket?). A GET of an absent object does, and if it is
      // allowed, object access is all we need.
      try {
        await this.s3!.send(new this.sdk!.GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key('vrift-probe') }));
      } catch (e2) {
        if (isNotFound(e2)) return;
        throw this.fail(e2, 'opening the bucket');
      }
    }
  }

  /** Turns an SDK error into a TierError naming the endpoint, the bucket and the fix. */
  fail(e: unknown, doing: string): TierError {
    if (isTierError(e)) return e;
    const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const name = err.name ?? '';
    const status = err.$metadata?.httpStatusCode;
    const msg = (err.message ?? String(e)).split('\n')[0]!.slice(0, 160);
    const at = `${this.where} (${doing})`;
    if (name === 'NoSuchBucket' || name === 'InvalidBucketName') {
      return new TierError('s3', 'config', `bucket ${JSON.stringify(this.cfg.bucket)} does not exist at ${this.cfg.endpoint ?? 'AWS'}`, {
        hint: 'create the bucket, or fix VRIFT_S3_BUCKET / VRIFT_S3_ENDPOINT',
        cause: e,
      });
    }
    if (name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'AccessDenied' || name === 'ExpiredToken' || status === 403 || status === 401) {
      const what = name === 'InvalidAccessKeyId' ? `the access key ${JSON.stringify(this.cfg.accessKeyId ?? '(default credentials)')} is not known` : name === 'SignatureDoesNotMatch' ? 'the secret key does not match the access key' : `access denied (${name || status})`;
      return new TierError('s3', 'auth', `${what} at ${at}`, {
        hint: 'check VRIFT_S3_ACCESS_KEY_ID and VRIFT_S3_SECRET_ACCESS_KEY (or the AWS credentials) and the bucket policy',
        cause: e,
      });
    }
    const errno = err.code ?? '';
    if (/ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|EPIPE|EAI_AGAIN|socket hang up|Timeout|aborted/i.test(`${errno} ${name} ${msg}`) || (status !== undefined && status >= 500) || name === 'SlowDown') {
      return new TierError('s3', 'unavailable', `${at}: unreachable or failing (${errno || name || status}: ${msg})`, {
        hint: 'start the S3 server, or check VRIFT_S3_ENDPOINT',
        cause: e,
      });
    }
    return new TierError('s3', 'io', `${at}: ${name || 'error'}: ${msg}`, { cause: e });
  }
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || (err.$metadata?.httpStatusCode === 404 && err.name !== 'NoSuchBucket');
}

export class S3Tier implements Tier {
  readonly name = 's3';
  readonly writable = true;
  readonly parallelism = 16;
  readonly objects: S3Objects;
  private readonly packs: S3Packs;

  constructor(cfg: S3Config) {
    this.objects = new S3Objects(cfg);
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
    if (source.size < this.objects.cfg.partSize) await this.objects.putBuffer(`blobs/${digest}`, await source.readAll());
    else await this.objects.upload(`blobs/${digest}`, source.open());
  }

  async getRef(name: string): Promise<Digest | undefined> {
    const v = await this.objects.getText(`refs/${name}`);
    return v === undefined ? undefined : parseRef(name, v).tree;
  }

  async setRef(name: string, tree: Digest): Promise<void> {
    await this.objects.putBuffer(`refs/${name}`, Buffer.from(JSON.stringify({ tree, updatedAt: Date.now() })), 'application/json');
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    const objs = (await this.objects.list(`refs/${prefix}`, 10_000)).sort((a, b) => b.modified - a.modified).slice(0, limit);
    const refs = await mapLimit(objs, this.parallelism, async (o) => {
      const name = o.rel.slice('refs/'.length);
      const v = await this.objects.getText(o.rel);
      return v === undefined ? undefined : { ...parseRef(name, v), updatedAt: o.modified };
    });
    return refs.filter((r): r is RefInfo => r !== undefined);
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

function parseRef(name: string, v: string): RefInfo {
  let data: { tree?: unknown; updatedAt?: unknown } | undefined;
  try {
    data = JSON.parse(v) as typeof data;
  } catch {
    data = undefined;
  }
  if (typeof data?.tree !== 'string' || !isDigest(data.tree)) {
    throw new TierError('s3', 'corrupt', `ref ${JSON.stringify(name)} holds ${JSON.stringify(v.slice(0, 80))}, not a tree id`, {
      hint: 'save the ref again, or delete the object refs/<name>',
    });
  }
  return { name, tree: data.tree, updatedAt: typeof data.updatedAt === 'number' ? data.updatedAt : 0 };
}

export const s3Tier: TierFactory<S3Config | undefined> = {
  name: 's3',
  config: section,
  create: (_ctx, cfg) => (cfg ? new S3Tier(cfg) : undefined),
};
