// A real S3-protocol server for tests: s3rver in a child process (so it
// keeps serving while a test blocks on a synchronous CLI run), a free
// loopback port, a fresh directory, buckets created at start.
// stop()/start() keep port and directory: the data survives a restart.
//
// About credentials: s3rver knows one key pair, S3RVER/S3RVER. It rejects
// an unknown access key (InvalidAccessKeyId) but does not check SigV4
// signatures, so a wrong *secret* is accepted; tests use a wrong key id.
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { ROOT } from './cli.js';
import { freePort } from './ports.js';
import { serverProcess } from './server-process.js';
import { tempDir } from './tmp.js';

export const S3_KEY = 'S3RVER';
export const S3_SECRET = 'S3RVER';

export interface S3Server {
  port: number;
  endpoint: string;
  dir: string;
  buckets: string[];
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A real SDK client for tests that poke at objects. */
  client(): S3Client;
}

export async function startS3(buckets: string[] = ['vrift-test']): Promise<S3Server> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const port = await freePort();
  const dir = tempDir('vrift-s3-');
  const endpoint = `http://127.0.0.1:${port}`;
  let client: S3Client | undefined;
  const bin = join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js');
  const args = [bin, '-d', dir, '-p', String(port), '-a', '127.0.0.1', '-s', ...buckets.flatMap((b) => ['--configure-bucket', b])];

  const proc = serverProcess('s3rver', process.execPath, args, port, 15_000);

  const server: S3Server = {
    port,
    endpoint,
    dir,
    buckets,
    start: () => proc.start(),
    stop: () => proc.stop(),
    client() {
      client ??= new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_SECRET },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      return client;
    },
  };
  await server.start();
  return server;
}

/** Environment for a vrift process that uses these servers (either may be omitted). */
export function tierEnv(opts: { redis?: { url: string }; s3?: S3Server; bucket?: string; prefix?: string }): Record<string, string> {
  const env: Record<string, string> = {};
  if (opts.redis) env.VRIFT_REDIS_URL = opts.redis.url;
  if (opts.s3) {
    env.VRIFT_S3_BUCKET = opts.bucket ?? opts.s3.buckets[0]!;
    env.VRIFT_S3_ENDPOINT = opts.s3.endpoint;
    env.VRIFT_S3_ACCESS_KEY_ID = S3_KEY;
    env.VRIFT_S3_SECRET_ACCESS_KEY = S3_SECRET;
    if (opts.prefix) env.VRIFT_S3_PREFIX = opts.prefix;
  }
  return env;
}
