// The few S3 object operations the S3 tier and its packs need (get, head,
// put, multipart upload, list), on one lazily created client, with every
// SDK error turned into a TierError that names the endpoint, the bucket
// and the fix. The SDK is imported on first use.
import { Transform, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { through } from '../../lib/zstd.js';
import type { S3Config } from './s3.js';
import { isTierError, TierError } from '../tier.js';

type Sdk = typeof import('@aws-sdk/client-s3');

/** The few object operations the tier and its packs need, with errors already mapped. */
export class S3Objects {
  private sdk: Sdk | undefined;
  private s3: S3Client | undefined;
  private probe: Promise<void> | undefined;
  readonly where: string;

  constructor(
    readonly cfg: S3Config,
    /** Told the bytes of every object body read or written (network traffic, as stored). */
    private readonly onWire: (direction: 'in' | 'out', bytes: number) => void = () => undefined,
  ) {
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
      return { stream: this.counted(r.Body as Readable), size: r.ContentLength };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.fail(e, `reading ${rel}`);
    }
  }

  /**
   * Bytes `[start, end)` of an object (a ranged GET), or undefined when there
   * is no such object. A server that sends another length (an object shorter
   * than the caller was told, a server that ignores Range) is a corrupt tier.
   */
  async getRange(rel: string, start: number, end: number): Promise<{ stream: Readable; size: number } | undefined> {
    const { sdk, s3 } = await this.client();
    const wrong = (got: string) => new TierError('s3', 'corrupt', `${rel} answered a read of bytes ${start}-${end - 1} with ${got}`, { hint: 'the object is shorter than its index says; push the tree again' });
    let r;
    try {
      r = await s3.send(new sdk.GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(rel), Range: `bytes=${start}-${end - 1}` }));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      if ((e as { name?: string }).name === 'InvalidRange') throw wrong('"range not satisfiable"');
      throw this.fail(e, `reading ${rel}`);
    }
    if (r.ContentLength !== end - start) {
      (r.Body as Readable | undefined)?.destroy();
      throw wrong(`${r.ContentLength ?? 'an unknown number of'} bytes`);
    }
    return { stream: this.counted(r.Body as Readable), size: r.ContentLength };
  }

  /**
   * A body whose bytes are counted as they arrive (the wire counter), not
   * as its length promises: a read given up midway (a pull handed to a
   * swarm, a liar cut off) costs what came, not the whole object. Counted
   * where the HTTP parser hands each chunk in (`push`), with no stream added.
   */
  private counted(body: Readable): Readable {
    // What came with the headers is in its buffer already.
    if (body.readableLength > 0) this.onWire('in', body.readableLength);
    const push = body.push.bind(body);
    body.push = (chunk: unknown, encoding?: BufferEncoding) => {
      if (chunk) this.onWire('in', (chunk as Uint8Array).byteLength);
      return push(chunk, encoding);
    };
    return body;
  }

  async getText(rel: string): Promise<string | undefined> {
    return (await this.getBuffer(rel))?.toString('utf8');
  }

  /** A small object whole, or undefined when there is none. */
  async getBuffer(rel: string): Promise<Buffer | undefined> {
    const body = await this.get(rel);
    return body && this.drain(rel, body.stream);
  }

  /** Bytes `[start, end)` of an object whole (a small object of known size: a pack index), or undefined when there is none. */
  async getRangeBuffer(rel: string, start: number, end: number): Promise<Buffer | undefined> {
    const body = await this.getRange(rel, start, end);
    return body && this.drain(rel, body.stream);
  }

  private async drain(rel: string, stream: Readable): Promise<Buffer> {
    const chunks: Buffer[] = [];
    try {
      for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
    } catch (e) {
      throw this.fail(e, `reading ${rel}`);
    }
    return Buffer.concat(chunks);
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
      this.onWire('out', body.byteLength);
    } catch (e) {
      throw this.fail(e, `writing ${rel}`);
    }
  }

  /** Streams an upload of unknown length: multipart once it passes one part. */
  async upload(rel: string, body: Readable): Promise<void> {
    const { s3 } = await this.client();
    const { Upload } = await import('@aws-sdk/lib-storage');
    const counted = through(
      body,
      new Transform({
        transform: (chunk: Buffer, _enc, done) => {
          this.onWire('out', chunk.byteLength);
          done(null, chunk);
        },
      }),
    );
    const up = new Upload({ client: s3, params: { Bucket: this.cfg.bucket, Key: this.key(rel), Body: counted }, partSize: this.cfg.partSize, queueSize: 4, leavePartsOnError: false });
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

  /** Loads the SDK and asks about the bucket now (a daemon does at start): the first real request then costs one round trip. */
  async warm(): Promise<void> {
    await this.client().catch(() => undefined);
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
