// A TCP proxy that slows the bytes coming back from its upstream to a set
// rate (a far-away S3 on loopback). A child process of its own, like the
// servers tests start, so it keeps forwarding while a test blocks on a
// synchronous CLI run.
//   node throttle-proxy.mjs <listen port> <upstream port> <bytes per second>
import { createServer, connect } from 'node:net';

const [listenPort, upstreamPort, rate] = process.argv.slice(2).map(Number);
const TICK_MS = 20;
const perTick = Math.max(1, Math.floor((rate * TICK_MS) / 1000));

createServer((client) => {
  const upstream = connect(upstreamPort, '127.0.0.1');
  client.pipe(upstream);
  // Upstream → client through a token bucket refilled every tick.
  const queue = [];
  let budget = perTick;
  let ended = false;
  const flush = () => {
    while (queue.length > 0 && budget > 0) {
      const head = queue[0];
      const n = Math.min(head.length, budget);
      client.write(head.subarray(0, n));
      budget -= n;
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
    }
    if (queue.length > 8) upstream.pause();
    else upstream.resume();
    if (ended && queue.length === 0) client.end();
  };
  const timer = setInterval(() => {
    budget = perTick;
    flush();
  }, TICK_MS);
  upstream.on('data', (d) => {
    queue.push(d);
    flush();
  });
  upstream.on('end', () => {
    ended = true;
    flush();
  });
  const close = () => {
    clearInterval(timer);
    client.destroy();
    upstream.destroy();
  };
  upstream.on('error', close);
  client.on('error', close);
  client.on('close', close);
}).listen(listenPort, '127.0.0.1');
