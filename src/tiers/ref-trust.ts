// Who may point a ref (docs/security.md "Refs: who may point them"): the
// records refs keep in shared tiers are signed by their writer
// (src/lib/ref-signature.ts), and a reader accepts one only if its key may
// write that ref's namespace. Section "refs" of the config:
//
//   trust     rules "<prefix>=<key>" (VRIFT_REF_TRUST, comma-separated): the
//             longest prefix a ref name starts with decides which keys may
//             write it; "*" is any key whose signature verifies. Without a
//             rule for a name (no rule with the empty prefix either), any
//             verified key may.
//   unsigned  "refuse" (default) or "accept": records without a signature
//             (written by vrift before signatures, or by hand).
//   signingKey  the PEM private key this process signs with (a CI job's
//             own key, VRIFT_SIGNING_KEY); default: the node's own, made on
//             first use in <home>/keys/ref-signing.pem.
import { VriftError } from '../lib/errors.js';
import { isRefKeyId, parseRefRecord, verifyRefRecord, type RefSigner } from '../lib/ref-signature.js';
import { refSigner } from '../node/store/ref-key.js';
import { defaults, list, object, oneOf, text, type ConfigSection } from '../node/config/schema.js';
import type { Digest } from '../lib/digest.js';
import { decodeRef, encodeRef, TierError, type RefInfo, type RefTarget, type TierLog } from './tier.js';

export interface RefsConfig {
  trust: string[];
  unsigned: 'refuse' | 'accept';
  signingKey?: string;
}

function ruleProblem(rule: string): string | undefined {
  const eq = rule.lastIndexOf('=');
  if (eq < 0) return `${JSON.stringify(rule)} is not "<prefix>=<key>"`;
  const key = rule.slice(eq + 1);
  if (key !== '*' && !isRefKeyId(key)) return `${JSON.stringify(key)} is not a key ("ed25519:…" as \`vrift ref key\` prints it, or *)`;
  return undefined;
}

export const refsSection: ConfigSection<RefsConfig> = {
  key: 'refs',
  schema: defaults(
    object(
      {
        trust: list({ example: 'main/=ed25519:…,pr/=*' }).default([]),
        unsigned: oneOf(['refuse', 'accept'] as const).default('refuse'),
        signingKey: text({ example: '/etc/vrift/ci-key.pem' }).optional(),
      },
      { absent: 'defaults' },
    ),
  ),
  env: { VRIFT_REF_TRUST: 'trust', VRIFT_REF_UNSIGNED: 'unsigned', VRIFT_SIGNING_KEY: 'signingKey' },
};

/** Which keys may write which ref names. */
export class RefTrust {
  /** prefix → keys ("*": any verified key), longest prefixes first. */
  private readonly rules: [string, Set<string>][];

  constructor(rules: readonly string[]) {
    const byPrefix = new Map<string, Set<string>>();
    for (const rule of rules) {
      const problem = ruleProblem(rule);
      if (problem) throw new VriftError('ERR_VRIFT_CONFIG_INVALID', `invalid configuration: refs.trust (VRIFT_REF_TRUST): ${problem}`, { hint: 'write rules as <ref prefix>=<key>, e.g. main/=ed25519:… (see docs/security.md)' });
      const eq = rule.lastIndexOf('=');
      const prefix = rule.slice(0, eq);
      if (!byPrefix.has(prefix)) byPrefix.set(prefix, new Set());
      byPrefix.get(prefix)!.add(rule.slice(eq + 1));
    }
    this.rules = [...byPrefix].sort((a, b) => b[0].length - a[0].length);
  }

  /** The rule that decides `name`: its prefix and keys, or undefined (any verified key). */
  ruleFor(name: string): [string, Set<string>] | undefined {
    return this.rules.find(([prefix]) => name.startsWith(prefix));
  }

  allows(name: string, key: string): boolean {
    const rule = this.ruleFor(name);
    return !rule || rule[1].has('*') || rule[1].has(key);
  }
}

/** Writes and reads ref records for the shared tiers. */
export class RefCodec {
  private signer: RefSigner | undefined;
  private readonly trust: RefTrust;

  constructor(
    private readonly cfg: RefsConfig,
    private readonly home: string,
    private readonly log: TierLog,
  ) {
    this.trust = new RefTrust(cfg.trust);
  }

  /** The key this process signs with (made on first use when it is the node's own). */
  key(): RefSigner {
    this.signer ??= refSigner(this.home, this.cfg.signingKey);
    return this.signer;
  }

  /** The record to store for `name` → `target`. */
  encode(name: string, target: RefTarget): string {
    return JSON.stringify(this.key().record(name, target.tree, target.times, Date.now(), target.lazy));
  }

  /**
   * A record read from `tier`: the ref it names, or undefined (and one
   * warning saying why) when it is not to be trusted. A value that is no
   * record at all throws `corrupt(why)` ("not a tree id", or what is wrong
   * with its signature fields).
   */
  decode(tier: string, name: string, value: string, corrupt: (why: string) => Error): RefInfo | undefined {
    const rec = parseRefRecord(value);
    if (typeof rec === 'string') throw corrupt(rec === 'a malformed signature' ? rec : 'not a tree id');
    const refuse = (why: string, fix: string): undefined => {
      this.log('warn', `refs: ${tier}'s ref ${JSON.stringify(name)} (tree ${rec.tree.slice(0, 12)}…) was refused: ${why} (${fix})`);
      return undefined;
    };
    if (rec.key === undefined) {
      if (this.cfg.unsigned === 'accept') return refInfo(name, rec);
      return refuse('it is not signed', 'save it again with this vrift, or set refs.unsigned=accept (VRIFT_REF_UNSIGNED) to trust unsigned refs');
    }
    if (!verifyRefRecord(name, rec)) return refuse(`its signature does not verify for ${rec.key}`, 'someone changed it after it was written: save it again from a trusted writer');
    if (!this.trust.allows(name, rec.key)) {
      const [prefix] = this.trust.ruleFor(name)!;
      return refuse(`it is signed by ${rec.key}, which may not write refs under ${JSON.stringify(prefix)}`, `add "${prefix}=${rec.key}" to refs.trust (VRIFT_REF_TRUST) if that writer is trusted`);
    }
    return { ...refInfo(name, rec), record: value }; // checked: kept, so a peer that learns it serves the writer's signature
  }
}

function refInfo(name: string, rec: { tree: Digest; times?: Digest; lazy?: Digest; updatedAt: number }): RefInfo {
  return { name, tree: rec.tree, ...(rec.times === undefined ? {} : { times: rec.times }), ...(rec.lazy === undefined ? {} : { lazy: rec.lazy }), updatedAt: rec.updatedAt };
}

/** What a shared tier stores for `name` → `target`: a signed record (unsigned from a tier built alone, without a codec, as tests build them). */
export function storedRef(refs: RefCodec | undefined, name: string, target: RefTarget): string {
  return refs ? refs.encode(name, target) : encodeRef(target);
}

/**
 * The ref a value a shared tier holds names: checked by `refs` (undefined,
 * with one warning, when it is not to be trusted), or read as it is without
 * a codec. A value that is no record at all is a corrupt-ref TierError
 * carrying the tier's `hint`.
 */
export function readStoredRef(refs: RefCodec | undefined, tier: string, name: string, value: string, hint: string): RefInfo | undefined {
  if (!refs) return decodeRef(tier, name, value, hint);
  return refs.decode(tier, name, value, (why) => new TierError(tier, 'corrupt', `ref ${JSON.stringify(name)} holds ${JSON.stringify(value.slice(0, 80))}, ${why}`, { hint }));
}
