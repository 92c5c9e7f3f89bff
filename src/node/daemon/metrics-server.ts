// The daemon's Prometheus endpoint (GET /metrics): the counters every
// component keeps in `Metrics` (tiers, admission, lazy mounts, peers), the
// durations it observes as histograms (seconds), gauges read at scrape
// time (store, mounts, peers, fetches in flight) and the process's own
// (CPU, memory, event-loop lag). prom-client renders the histograms, the
// gauges and the process metrics (a well-kept library: its bucket and
// exposition code is what Prometheus users expect); our counters already
// render themselves in the text format (lib/metrics.ts). No label value
// is a ref, a path or a digest: series stay bounded.
//
// Where it listens: section "metrics" (src/node/metrics/config.ts). When
// the default port is taken (another daemon on this host), an ephemeral
// one is used and `vrift status --json` says which (`metricsUrl`).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Labels, Metrics } from '../../lib/metrics.js';
import { DEFAULT_LISTEN, type MetricsConfig } from '../metrics/config.js';

/** Histogram buckets (seconds): a local hit in a millisecond to a slow S3 object. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A gauge read at scrape time: its value, or a value per label set. */
export interface ScrapeGauge {
  name: string;
  help: string;
  labelNames?: string[];
  read(): number | [Labels, number][];
}

const HELP: Record<string, string> = {
  vrift_tier_request_duration_seconds: 'Time a remote tier took to answer one call (a streamed body is read after), by tier and call.',
  vrift_fetch_duration_seconds: "Time a program waited on a lazy mount's FETCH of a blob, by how it ended.",
};

export class MetricsServer {
  private server: Server | undefined;
  private readonly registry = new Registry();
  private readonly histograms = new Map<string, Histogram<string>>();
  url: string | undefined;

  constructor(
    private readonly metrics: Metrics,
    private readonly cfg: MetricsConfig,
    gauges: ScrapeGauge[],
    private readonly log: (line: string) => void,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: 'vrift_' }); // vrift_process_*, vrift_nodejs_*
    for (const g of gauges) {
      new Gauge({
        name: g.name,
        help: g.help,
        labelNames: g.labelNames ?? [],
        registers: [this.registry],
        collect() {
          const v = g.read();
          if (typeof v === 'number') this.set(v);
          else for (const [labels, n] of v) this.set(labels, n);
        },
      });
    }
    metrics.observer = (name, labels, seconds) => this.histogram(name, labels).observe(labels, seconds);
  }

  private histogram(name: string, labels: Labels): Histogram<string> {
    let h = this.histograms.get(name);
    if (!h) {
      h = new Histogram({ name, help: HELP[name] ?? name, labelNames: Object.keys(labels).sort(), buckets: BUCKETS, registers: [this.registry] });
      this.histograms.set(name, h);
    }
    return h;
  }

  async start(): Promise<void> {
    if (this.cfg.listen === 'off') return;
    const at = this.cfg.listen.lastIndexOf(':');
    const host = this.cfg.listen.slice(0, at).replace(/^\[(.*)\]$/, '$1');
    const port = Number(this.cfg.listen.slice(at + 1));
    const server = createServer((req, res) => void this.serve(req.url ?? '/', req.method ?? 'GET', res));
    try {
      await listen(server, host, port);
    } catch (e) {
      // Another daemon on this host has the default port: this one still serves, elsewhere.
      if ((e as { code?: string }).code !== 'EADDRINUSE' || this.cfg.listen !== DEFAULT_LISTEN) {
        this.log(`metrics: cannot listen on ${this.cfg.listen} (${(e as Error).message}); no metrics endpoint (set metrics.listen, VRIFT_METRICS_LISTEN)`);
        return;
      }
      await listen(server, host, 0);
      this.log(`metrics: ${this.cfg.listen} is taken (another daemon?); serving on port ${(server.address() as AddressInfo).port} instead`);
    }
    this.server = server;
    const a = server.address() as AddressInfo;
    this.url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`;
  }

  async stop(): Promise<void> {
    this.metrics.observer = undefined;
    const s = this.server;
    this.server = undefined;
    await new Promise<void>((r) => (s ? s.close(() => r()) : r()));
  }

  private async serve(url: string, method: string, res: import('node:http').ServerResponse): Promise<void> {
    if (method !== 'GET' || url.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('vrift: GET /metrics\n');
      return;
    }
    try {
      const body = (await this.registry.metrics()) + this.metrics.render();
      res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`vrift: ${(e as Error).message}\n`);
    }
  }
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
