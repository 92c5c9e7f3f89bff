// Preloaded (node --import) into a test daemon to make it a peer whose
// bulk frames are altered on their way out: every sealed frame of at
// least 64 KiB (archive buffers, swarm pieces; not tickets or control
// frames) gets one bit flipped after it was sealed, as a host between two
// members that changes bytes would. It patches the compiled SealedSocket
// that the daemon itself imports (an ES module is one instance per URL).
// Nothing in src/ knows.
const { SealedSocket } = await import(new URL('../../dist/src/lib/sealed-socket.js', import.meta.url).href);
// Fail loudly (the daemon does not start) rather than leave an honest peer a test believes tampered with.
if (typeof SealedSocket?.prototype?.frame !== 'function') throw new Error('tamper-peer.mjs: SealedSocket.prototype.frame is gone; update this helper');

const frame = SealedSocket.prototype.frame;
SealedSocket.prototype.frame = function tampered(body, done) {
  frame.call(this, body, done);
  // The socket is corked while a write's frames are queued: the sealed bytes still go out from this buffer.
  if (body.byteLength >= 64 << 10) body[body.byteLength >> 1] ^= 0x01;
};
