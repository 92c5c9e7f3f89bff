// Section "metrics" of the config: where the daemon serves Prometheus
// metrics (src/node/daemon/metrics-server.ts). `listen` (VRIFT_METRICS_LISTEN):
// host:port, default 127.0.0.1:9464 (loopback: a DaemonSet sets 0.0.0.0:9464
// for its scraper); "off" serves nothing.
import { defaults, object, text, type ConfigSection } from '../config/schema.js';

export interface MetricsConfig {
  listen: string;
}

export const DEFAULT_LISTEN = '127.0.0.1:9464';

function listenProblem(s: string): string | undefined {
  if (s === 'off') return undefined;
  const m = /^(.+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) return `${JSON.stringify(s)} is not host:port (or off)`;
  return undefined;
}

export const metricsSection: ConfigSection<MetricsConfig> = {
  key: 'metrics',
  schema: defaults(object({ listen: text({ example: DEFAULT_LISTEN, check: listenProblem }).default(DEFAULT_LISTEN) }, { absent: 'defaults' })),
  env: { VRIFT_METRICS_LISTEN: 'listen' },
};

