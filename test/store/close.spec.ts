// Closing the store ends the process's use of LMDB and lets it exit,
// whatever it wrote before: lmdb-js 3.5 deadlocked in its native close
// right after synchronous commits (Meta.close says how it is avoided).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const STORE_JS = join(ROOT, 'dist', 'src', 'node', 'store', 'store.js');

/** Runs `body` in a fresh process with `s`, the store of `home`, open; then closes it and prints "closed". A hang is killed after 30 s. */
function inChild(home: string, body: string): { status: number | null; stdout: string; stderr: string } {
  const script = `const { Store } = await import(${JSON.stringify(STORE_JS)});
const s = Store.open(${JSON.stringify(home)});
${body}
await s.close();
process.stdout.write('closed');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('closing the store', () => {
  it('right after several synchronous transactions: closes and the process exits', () => {
    const r = inChild(tempDir('vrift-close-'), `for (let i = 0; i < 8; i++) s.meta.transact(() => s.meta.state.put(['k', i], { i }));`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('closed');
    expect(r.status).toBe(0);
  });

  it('after synchronous transactions and then asynchronous writes: closes, and the writes are there when it is opened again', () => {
    const home = tempDir('vrift-close-');
    const write = inChild(home, `for (let i = 0; i < 30; i++) s.meta.transact(() => s.meta.state.put(['k', i], { i }));
for (let i = 0; i < 20; i++) await s.meta.state.put(['a', i], { i });`);
    expect(write.stdout).toBe('closed');
    expect(write.status).toBe(0);
    const read = inChild(home, `process.stdout.write(JSON.stringify([s.meta.state.get(['k', 29]), s.meta.state.get(['a', 19])]));`);
    expect(read.stdout).toBe(`${JSON.stringify([{ i: 29 }, { i: 19 }])}closed`);
  });
});
