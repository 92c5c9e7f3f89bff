// Where a node keeps its state: $VRIFT_HOME (default ~/.vrift).
//
//   cas/ab/<digest>     blobs, read-only (0444), sharded by the first byte
//   cas/ab/<digest>.x   executable twins (0555) of blobs some tree marks +x
//   tmp/                temp files on the same filesystem, renamed into cas/
//   quarantine/         blobs `vrift verify` found corrupt, kept for forensics
//   meta/               the LMDB environment (source of truth for metadata)
//   run/                the daemon's socket and pid file
//
// The names are shim/vrift_layout.h's (the shim and the addon use the same).
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import { trustPart, trustRoot } from './home-trust.js';

export interface HomeLayout {
  root: string;
  cas: string;
  tmp: string;
  quarantine: string;
  meta: string;
  run: string;
}

export function resolveHome(explicit?: string): string {
  const fromEnv = process.env.VRIFT_HOME;
  return resolve(explicit ?? (fromEnv && fromEnv.length > 0 ? fromEnv : join(homedir(), '.vrift')));
}

export function homeLayout(root: string): HomeLayout {
  return {
    root,
    cas: join(root, LAYOUT.home.cas),
    tmp: join(root, LAYOUT.home.tmp),
    quarantine: join(root, LAYOUT.home.quarantine),
    meta: join(root, LAYOUT.home.meta),
    run: join(root, LAYOUT.home.run),
  };
}

/**
 * Creates the directories of a home (owner-only: it holds the cluster's
 * secrets and sockets), and refuses one another user could have prepared
 * (home-trust.ts): ERR_VRIFT_HOME_UNSAFE, naming the path and the fix.
 */
export function ensureHome(layout: HomeLayout): void {
  trustRoot(layout.root);
  for (const dir of [layout.cas, layout.tmp, layout.quarantine, layout.meta, layout.run]) trustPart(dir, layout.root);
  // made when first needed, by their owners (upper.ts, ns.ts): checked if there
  for (const part of [LAYOUT.home.upper, LAYOUT.home.farm]) trustPart(join(layout.root, part), layout.root, false);
}
