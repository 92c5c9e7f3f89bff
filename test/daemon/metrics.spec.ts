// The daemon's Prometheus endpoint (issue 15): after a restore and a lazy
// open, a scrape of /metrics shows the tiers' counters and latency
// histograms, the store, mounts, peers, fetches in flight, how mounted
// blobs arrived, and the process; no label value is a digest or a path.
// Real daemons, a real s3rver, a real HTTP scrape.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TIER_COUNTERS } from '../../src/lib/metrics.js';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

let s3: S3Server;
let env: Record<string, string>;

beforeAll(async () => {
  s3 = await startS3(['vrift-metrics']);
  // (a lazy mount from the full listing: its blob counts are the ones checked here)
  env = { ...tierEnv({ s3 }), VRIFT_PREFETCH: 'false', VRIFT_LAZY_INDEX: 'false' };
  const src = tempDir();
  writeSampleTree(src);
  vriftJson(['save', 'ci/metrics', src], { home: tempDir(), env });
});
afterAll(async () => {
  await s3?.stop();
});

/** Series name → its samples ("labels value" lines), from the text format. */
function parse(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0];
    out.set(name, [...(out.get(name) ?? []), line.slice(name.length)]);
  }
  return out;
}

describe('GET /metrics', () => {
  it('after a restore and a lazy open: tiers, latency histograms, store, mounts, peers, in-flight fetches, how blobs arrived, the process', async () => {
    const home = tempDir();
    startDaemon(home, { ...env, VRIFT_METRICS_LISTEN: '127.0.0.1:0' });
    try {
      expect(vrift(['restore', 'ci/metrics', join(tempDir(), 'out')], { home, env }).code).toBe(0);
      const lazyHome = tempDir();
      startDaemon(lazyHome, { ...env, VRIFT_METRICS_LISTEN: '127.0.0.1:0' });
      const lazyMnt = join(tempDir(), 'mnt');
      mkdirSync(lazyMnt);
      expect(vrift(['run', '--mount', `${lazyMnt}=ci/metrics`, '--', 'cat', join(lazyMnt, 'README.md')], { home: lazyHome, env }).code).toBe(0);

      for (const h of [home, lazyHome]) {
        const url = vriftJson(['status'], { home: h, env }).metricsUrl as string;
        expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
        const res = await fetch(url);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
        const series = parse(await res.text());
        for (const name of ['vrift_store_blobs', 'vrift_store_bytes', 'vrift_mounts', 'vrift_peers', 'vrift_fetches_in_flight', 'vrift_mount_blobs', 'vrift_streams_active', 'vrift_process_resident_memory_bytes', 'vrift_process_cpu_seconds_total']) {
          expect(series.has(name), `${name} in the scrape`).toBe(true);
        }
        expect(series.get('vrift_tier_request_duration_seconds_bucket')!.some((l) => l.includes('tier="s3"') && l.includes('le="+Inf"'))).toBe(true);
        expect(Number(series.get('vrift_store_blobs')![0]!.trim())).toBeGreaterThan(0);
        // Bounded label values: no digests, no paths.
        for (const [, samples] of series) for (const l of samples) expect(l).not.toMatch(/="[^"]*(?:[0-9a-f]{64}|\/)[^"]*"/);
      }
      const restored = parse(await (await fetch(vriftJson(['status'], { home, env }).metricsUrl as string)).text());
      expect(restored.get('vrift_tier_hits_total')!.some((l) => l.includes('tier="s3"'))).toBe(true);
      // Outcomes that have not happened yet are there at 0 from the first scrape (so rate() and alerts see them).
      for (const name of ['vrift_tier_misses_total', 'vrift_tier_errors_total']) expect(restored.get(name), name).toContain('{tier="s3"} 0');
      for (const name of ['vrift_store_evicted_blobs_total', 'vrift_store_evicted_bytes_total']) expect(restored.get(name), name).toContain(' 0');
      const lazy = parse(await (await fetch(vriftJson(['status'], { home: lazyHome, env }).metricsUrl as string)).text());
      expect(lazy.get('vrift_fetch_duration_seconds_count')!.some((l) => l.includes('result="fetched"'))).toBe(true);
      expect(lazy.get('vrift_mount_blobs')!.find((l) => l.includes('how="fetched_on_open"'))!.trim().split(' ').at(-1)).not.toBe('0');
      expect(lazy.get('vrift_mounts')![0]!.trim()).toBe('1');
      // The Grafana dashboard asks only for series the daemons export (counters appear once counted).
      const dashboard = readFileSync(join(ROOT, 'deploy', 'grafana', 'vrift-dashboard.json'), 'utf8');
      const known = new Set([...restored.keys(), ...lazy.keys(), ...Object.values(TIER_COUNTERS)]);
      for (const name of new Set(dashboard.match(/vrift_[a-z0-9_]+/g))) expect(known.has(name), `${name} (the dashboard's) is exported`).toBe(true);
      stopDaemon(lazyHome);
    } finally {
      stopDaemon(home);
    }
  });

  it('a taken default port: the second daemon serves on another and says which; "off" serves nothing', async () => {
    const a = tempDir();
    const b = tempDir();
    const c = tempDir();
    startDaemon(a, env);
    startDaemon(b, env);
    startDaemon(c, { ...env, VRIFT_METRICS_LISTEN: 'off' });
    try {
      const [ua, ub] = [a, b].map((h) => vriftJson(['status'], { home: h, env }).metricsUrl as string) as [string, string];
      expect(new Set([ua, ub]).size).toBe(2);
      for (const u of [ua, ub]) expect((await fetch(u)).status).toBe(200);
      expect(vriftJson(['status'], { home: c, env: { ...env, VRIFT_METRICS_LISTEN: 'off' } }).metricsUrl).toBeNull();
      expect((await fetch(ua.replace('/metrics', '/other'))).status).toBe(404);
    } finally {
      for (const h of [a, b, c]) stopDaemon(h);
    }
  });
});
