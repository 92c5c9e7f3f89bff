// The key a node signs the refs it writes with (docs/security.md "Refs: who
// may point them"): a CI job's own (refs.signingKey, VRIFT_SIGNING_KEY), or
// the node's, made on first use in <home>/keys/ref-signing.pem (0600).
// Here, below the tiers and the cluster, because both sign: the tiers the
// records they store, the peer service the refs it serves.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VriftError } from '../../lib/errors.js';
import { RefSigner } from '../../lib/ref-signature.js';

/** The signing key: `path` (a CI job's), else the node's own in <home>/keys, made on first use (0600). */
export function refSigner(home: string, path?: string): RefSigner {
  const file = path ?? join(home, 'keys', 'ref-signing.pem');
  try {
    if (!path && !existsSync(file)) {
      mkdirSync(join(home, 'keys'), { recursive: true, mode: 0o700 });
      writeFileSync(file, RefSigner.generatePem(), { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
    }
    return RefSigner.fromPem(readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as { code?: string }).code === 'EEXIST') return RefSigner.fromPem(readFileSync(file, 'utf8')); // made by another process meanwhile
    throw new VriftError('ERR_VRIFT_REF_KEY', `cannot use the ref signing key ${file}: ${(e as Error).message.split('\n')[0]}`, {
      hint: path ? 'point refs.signingKey (VRIFT_SIGNING_KEY) at a PEM Ed25519 private key (openssl genpkey -algorithm ed25519)' : `remove ${file} to make a new node key (refs it signed stay valid only where its key is trusted)`,
      exitCode: 1,
    });
  }
}
