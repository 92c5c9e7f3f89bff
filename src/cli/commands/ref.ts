// vrift ref set|get|list|rm: human names for trees (refs pin their trees against gc).
import type { Command } from 'commander';
import { assertDigest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import { parseRefRecord } from '../../lib/ref-signature.js';
import { subcommand, withStore } from '../command.js';

export function register(program: Command): void {
  const ref = program.command('ref').description('manage refs: names that point at trees');

  subcommand(ref, 'set <name> <tree>', 'point a ref at a tree id (or at the tree another ref names)')
    .action(
      withStore(({ store, out, args }) => {
        const [name, treeish] = args as [string, string];
        const tree = store.resolve(treeish);
        assertDigest(tree, 'tree id');
        if (!store.hasTree(tree)) {
          throw new VriftError('ERR_VRIFT_TREE_NOT_FOUND', `tree ${tree} is not in the local store`, {
            hint: 'ingest or pull it first',
            exitCode: 1,
          });
        }
        store.setRef(name, tree);
        out.result({ name, tree }, () => `${name} -> ${tree}`);
      }),
    );

  subcommand(ref, 'get <name>', 'print the tree a ref points at (exit 1 if there is none)')
    .action(
      withStore(({ store, out, args }) => {
        const tree = store.getRef(args[0]!);
        if (!tree) throw new VriftError('ERR_VRIFT_REF_NOT_FOUND', `no ref named ${JSON.stringify(args[0])}`, { hint: 'list refs with `vrift ref list`', exitCode: 1 });
        out.result({ name: args[0], tree }, () => tree);
      }),
    );

  subcommand(ref, 'list', 'list refs')
    .action(
      withStore(({ store, out }) => {
        // A ref learned from a shared tier keeps its writer's signed record: shown as the key that signed it.
        const refs = store.listRefs().map(({ record, ...r }) => (record === undefined ? r : { ...r, signedBy: signerOf(record) }));
        out.result({ refs }, () => refs.map((r) => `${r.tree} ${r.name}`));
      }),
    );

  subcommand(ref, 'key', "print the public key this node (or VRIFT_SIGNING_KEY) signs the refs it writes to shared tiers with: the key to list in refs.trust (docs/security.md)")
    .action(
      withStore(async ({ store, out }) => {
        const [{ loadNodeConfig }, { RefCodec, refsSection }] = await Promise.all([import('../../node/ops/node-config.js'), import('../../tiers/ref-trust.js')]);
        const refs = new RefCodec(loadNodeConfig({ home: store.layout.root }).get(refsSection), store.layout.root, () => undefined);
        const key = refs.key().keyId;
        out.result({ key }, () => key);
      }),
    );

  subcommand(ref, 'rm <name>', 'remove a ref (its tree becomes collectable)')
    .action(
      withStore(({ store, out, args }) => {
        if (!store.removeRef(args[0]!)) {
          throw new VriftError('ERR_VRIFT_REF_NOT_FOUND', `no ref named ${JSON.stringify(args[0])}`, { hint: 'list refs with `vrift ref list`', exitCode: 1 });
        }
        out.result({ removed: args[0] }, () => []);
      }),
    );
}

/** The key a stored record names as its signer, or null (unsigned, or not a record). */
function signerOf(record: string): string | null {
  const rec = parseRefRecord(record);
  return typeof rec === 'string' ? null : (rec.key ?? null);
}
