// Preloaded (node --import) into a test daemon to make it a slow peer:
// every archive it serves (bulk stream or gRPC) is paced to
// $VRIFT_TEST_SLOW_PEER_BPS bytes per second, so a test can kill it in
// the middle of a transfer. It patches the compiled RingWriter that the
// daemon itself imports: an ES module is one instance per URL, so the
// daemon's `import` gets this patched class. Nothing in src/ knows.
const bps = Number(process.env.VRIFT_TEST_SLOW_PEER_BPS);
if (!(bps > 0)) throw new Error('slow-peer.mjs: set VRIFT_TEST_SLOW_PEER_BPS to a rate in bytes per second');

const { RingWriter } = await import(new URL('../../dist/src/node/archive/ring-writer.js', import.meta.url).href);
// Fail loudly (the daemon does not start) rather than leave a fast peer a test believes slow.
if (typeof RingWriter?.prototype?.flush !== 'function') throw new Error('slow-peer.mjs: RingWriter.prototype.flush is gone; update this helper');

const flush = RingWriter.prototype.flush;
const started = new WeakMap();
RingWriter.prototype.flush = async function paced() {
  if (!started.has(this)) started.set(this, Date.now());
  await flush.call(this);
  // `bytes` counts what was handed to the sink: hold the writer until that much was due.
  const due = started.get(this) + (this.bytes / bps) * 1000;
  if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
};
