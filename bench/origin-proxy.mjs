// A TCP proxy in front of s3rver that caps what all its connections
// together receive from upstream at one rate: an origin with a bandwidth
// of its own (an S3 prefix, a NAT gateway, a site's uplink), where s3rver
// on loopback has none. A token bucket refilled every tick is shared out
// round-robin among the connections with bytes waiting.
//   node origin-proxy.mjs <listen port> <upstream port> <bytes per second>
import { connect, createServer } from 'node:net';

const [listenPort, upstreamPort, rate] = process.argv.slice(2).map(Number);
const TICK_MS = 10;
const perTick = Math.max(1, Math.floor((rate * TICK_MS) / 1000));
/** Connections with bytes queued, in turn. */
const waiting = new Set();

createServer((client) => {
  const upstream = connect(upstreamPort, '127.0.0.1');
  client.pipe(upstream);
  const conn = { client, upstream, queue: [], ended: false };
  upstream.on('data', (chunk) => {
    conn.queue.push(chunk);
    waiting.add(conn);
    if (conn.queue.length > 8) upstream.pause();
  });
  upstream.on('end', () => {
    conn.ended = true;
    if (conn.queue.length === 0) client.end();
  });
  const close = () => {
    waiting.delete(conn);
    client.destroy();
    upstream.destroy();
  };
  upstream.on('error', close);
  client.on('error', close);
  client.on('close', close);
}).listen(listenPort, '127.0.0.1');

setInterval(() => {
  let budget = perTick;
  while (budget > 0 && waiting.size > 0) {
    const share = Math.max(1, Math.floor(budget / waiting.size));
    for (const conn of [...waiting]) {
      let mine = Math.min(share, budget);
      while (mine > 0 && conn.queue.length > 0) {
        const head = conn.queue[0];
        const n = Math.min(head.length, mine);
        conn.client.write(head.subarray(0, n));
        mine -= n;
        budget -= n;
        if (n === head.length) conn.queue.shift();
        else conn.queue[0] = head.subarray(n);
      }
      if (conn.queue.length === 0) {
        waiting.delete(conn);
        conn.upstream.resume();
        if (conn.ended) conn.client.end();
      } else if (conn.queue.length <= 8) conn.upstream.resume();
      if (budget <= 0) break;
    }
  }
}, TICK_MS);
