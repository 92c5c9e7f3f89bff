// Writes inside a mount: staged, committed to the daemon on close, visible
// to every process of the mount, kept across a daemon restart, and saved
// as a tree by `vrift snapshot`.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { upperNameOf } from '../../src/node/mount/upper.js';
import { vdirNameOf } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { shimWorld, writeSmallSource } from './harness.js';

const w = shimWorld({ source: writeSmallSource });


/** One record in the journal format (vrift_proto.h "The journal"), as a shim appends it. */
function journalRecord(seq: number, change: number, mode: number, rel: string): Buffer {
  const b = Buffer.alloc(24 + Buffer.byteLength(rel));
  b.writeUInt32LE(b.length, 0);
  b.writeUInt32LE(change, 4);
  b.writeBigUInt64LE(BigInt(seq), 8);
  b.writeUInt32LE(mode, 16);
  b.writeUInt32LE(b.length - 24, 20);
  b.write(rel, 24);
  return b;
}
describe('writes inside a mount', () => {
  it('a build writes its outputs into the mount; vrift snapshot saves them; materialize brings them back', () => {
    const r = w.run(`cd '${w.mnt}/app' && make && ./out/app && make`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('hello from the mount 42');
    expect(r.stdout).toContain("'out/app' is up to date");
    // nothing landed on the real disk under the mount point
    expect(readdirSync(w.mnt)).toEqual([]);
    const snap = w.vrift(['snapshot', w.mnt, '--ref', 'build/out', '--json']);
    expect(snap.code).toBe(0);
    const tree = JSON.parse(snap.stdout).tree as string;
    expect(tree).toMatch(/^[0-9a-f]{64}$/);
    expect(tree).not.toBe(w.tree);
    const dir = join(tempDir(), 'restored');
    expect(w.vrift(['materialize', 'build/out', dir]).code).toBe(0);
    expect(existsSync(join(dir, 'app', 'out', 'main.o'))).toBe(true);
    const run = w.plain(`'${join(dir, 'app', 'out', 'app')}'`);
    expect(run.stdout).toBe('hello from the mount 42\n');
    // the original tree is untouched
    expect(w.vrift(['ls', w.tree]).stdout).not.toContain('out/main.o');
  });

  it('create, overwrite, append, truncate, redirections from children and subshells', () => {
    const r = w.run(
      [
        `cd '${w.mnt}'`,
        'echo a > f1',
        'echo b >> f1',
        '(echo c; echo d) > f2',
        'sh -c "echo e" > f3',
        'cat f1 f2 > f4',
        'exec 3>f5; echo g >&3; (echo h >&3); echo i >&3; exec 3>&-',
        'printf 12345 > f6; truncate -s 2 f6',
        'echo new > inc/greet.h',
        'cat f1 f2 f3 f4 f5 f6; echo; cat inc/greet.h',
      ].join(' && '),
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('a\nb\nc\nd\ne\na\nb\nc\nd\ng\nh\ni\n12\nnew\n');
  });

  it('another process of the mount sees committed changes at once', () => {
    expect(w.run(`cd '${w.mnt}' && mkdir -p shared/x && echo one > shared/x/file`).code).toBe(0);
    const r = w.run(`cat '${w.mnt}/shared/x/file'; ls '${w.mnt}/shared'`);
    expect(r.stdout).toBe('one\nx\n');
  });

  it('mkdir, rename (a directory moves with its subtree), unlink, rmdir, symlink, chmod, link', () => {
    const r = w.run(
      [
        `cd '${w.mnt}'`,
        'mkdir -p t/a/b && echo deep > t/a/b/f && ln -s a/b/f t/link',
        'mv t t2',
        'test ! -e t',
        'cat t2/a/b/f t2/link',
        'cp -r t2 t3 && rm -r t2',
        'test ! -e t2',
        'find t3 | sort',
        'printf "#!/bin/sh\\necho script ran\\n" > t3/s.sh && chmod +x t3/s.sh && t3/s.sh',
        'ln t3/a/b/f t3/hard && cat t3/hard',
        'rmdir t3 2>&1 || true',
        'mkdir t3 2>&1 || true',
      ].join(' && '),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'deep\ndeep\nt3\nt3/a\nt3/a/b\nt3/a/b/f\nt3/link\nscript ran\ndeep\n' +
        "rmdir: failed to remove 't3': Directory not empty\nmkdir: cannot create directory 't3': File exists\n",
    );
  });

  it('rename across the mount boundary falls back to copy (EXDEV), both ways', () => {
    const out = join(tempDir(), 'outside.txt');
    const r = w.run(`cd '${w.mnt}' && echo cross > c1 && mv c1 '${out}' && test ! -e c1 && mv '${out}' c2 && cat c2`);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('cross\n');
    expect(existsSync(out)).toBe(false);
  });

  it('python: atomic write (mkstemp + replace), read-your-writes before close, sed -i', () => {
    const r = w.run(`cd '${w.mnt}' && python3 - <<'EOF'
import os, tempfile
fd, p = tempfile.mkstemp(dir="inc")
os.write(fd, b"atomic"); os.close(fd); os.replace(p, "inc/atomic.txt")
print(open("inc/atomic.txt").read())
with open("open.txt", "w") as f:
    f.write("pending"); f.flush()
    print(os.stat("open.txt").st_size, open("open.txt").read())
print(sorted(n for n in os.listdir("inc") if n.startswith("tmp")))
EOF
sed -i 's/GREETING/MESSAGE/' app/main.c && grep -c MESSAGE app/main.c && (ls app | grep -c '^sed' || true)`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('atomic\n7 pending\n[]\n1\n0\n');
  });

  it('changes survive a daemon restart (the overlay is replayed)', () => {
    expect(w.run(`echo persisted > '${w.mnt}/persist.txt'`).code).toBe(0);
    const before = w.vrift(['snapshot', w.mnt]).stdout.trim();
    expect(w.vrift(['down']).code).toBe(0);
    expect(w.vrift(['up', '--detach']).code).toBe(0);
    expect(w.vrift(['snapshot', w.mnt]).stdout.trim()).toBe(before);
    expect(w.run(`cat '${w.mnt}/persist.txt'`).stdout).toBe('persisted\n');
  });

  it('journal records a burst cannot publish as they come (a child before its directory, a taken path, an unannounced directory) are looked at one by one, in order', () => {
    expect(w.run(`echo warm > '${w.mnt}/warm'`).code).toBe(0); // the mount and its upper layer exist
    const upper = join(w.home, 'upper', vdirNameOf(w.home, w.mnt)!);
    const issuedFile = join(upper, '.issued');
    const n = Number(readFileSync(issuedFile).readBigUInt64LE(0));
    // What shims would have made: a claim directory per new directory, a file per new file.
    mkdirSync(join(upper, upperNameOf('hd')), { mode: 0o700 });
    mkdirSync(join(upper, upperNameOf('hd2')), { mode: 0o700 });
    writeFileSync(join(upper, upperNameOf('hd/f')), 'in hd\n');
    writeFileSync(join(upper, upperNameOf('hd2/f')), 'in hd2\n');
    writeFileSync(join(upper, upperNameOf('run.sh')), 'not the tree file\n');
    const rec = journalRecord;
    writeFileSync(
      join(upper, '.journal', `${process.pid}.${Date.now()}`),
      Buffer.concat([
        rec(n + 1, 1, 0o644, 'hd/f'), // counted before its directory (by another process)
        rec(n + 2, 2, 0o40755, 'hd'),
        rec(n + 3, 1, 0o644, 'run.sh'), // a path of the tree: taken, its file is dropped
        rec(n + 4, 1, 0o644, 'hd2/f'), // its directory was never announced (the writer killed): published from the claim
      ]),
    );
    const count = Buffer.alloc(8);
    count.writeBigUInt64LE(BigInt(n + 4));
    const fd = openSync(issuedFile, 'r+');
    writeSync(fd, count, 0, 8, 0);
    closeSync(fd);
    // (a listing waits until every counted change is published)
    const r = w.run(`cd '${w.mnt}' && ls hd hd2 && cat hd/f hd2/f run.sh`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hd:\nf\n\nhd2:\nf\nin hd\nin hd2\n#!/bin/sh\necho "run.sh says $*"\n');
    expect(existsSync(join(upper, upperNameOf('run.sh')))).toBe(false);
    expect(readFileSync(join(w.home, 'run', 'vriftd.log'), 'utf8')).not.toMatch(/not published/);
  });

  it('files made and unlinked again within one batch of the journal (sqlite\'s journal file) leave nothing; a path of the tree and a file made again stay', () => {
    expect(w.run(`echo warm > '${w.mnt}/warm2'`).code).toBe(0);
    const upper = join(w.home, 'upper', vdirNameOf(w.home, w.mnt)!);
    const issuedFile = join(upper, '.issued');
    const n = Number(readFileSync(issuedFile).readBigUInt64LE(0));
    writeFileSync(join(upper, upperNameOf('again')), 'made again\n'); // the last create's file; the others are unlinked already
    const rec = (seq: number, change: number, rel: string): Buffer => journalRecord(seq, change, 0o644, rel);
    writeFileSync(
      join(upper, '.journal', `${process.pid}.${Date.now()}`),
      Buffer.concat([
        rec(n + 1, 1, 'gone-journal'),
        rec(n + 2, 3, 'gone-journal'),
        rec(n + 3, 1, 'again'),
        rec(n + 4, 3, 'again'),
        rec(n + 5, 1, 'again'),
        rec(n + 6, 1, 'run.sh'), // a path of the tree: taken (never a shim's create), and its GONE removes nothing of the tree
        rec(n + 7, 3, 'run.sh'),
      ]),
    );
    const count = Buffer.alloc(8);
    count.writeBigUInt64LE(BigInt(n + 7));
    const fd = openSync(issuedFile, 'r+');
    writeSync(fd, count, 0, 8, 0);
    closeSync(fd);
    // (a listing waits until every counted change is published)
    const look = `cd '${w.mnt}' && ls | grep -E '^(again|gone-journal|run.sh)$'; cat again run.sh; ls gone-journal 2>&1 | sed 's/.*: //'`;
    const want = `again\nrun.sh\nmade again\n#!/bin/sh\necho "run.sh says $*"\nNo such file or directory\n`;
    const r = w.run(look);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(want);
    // the overlay (what a restarted daemon publishes) says the same
    const before = w.vrift(['snapshot', w.mnt]).stdout.trim();
    expect(w.vrift(['down']).code).toBe(0);
    expect(w.vrift(['up', '--detach']).code).toBe(0);
    expect(w.vrift(['snapshot', w.mnt]).stdout.trim()).toBe(before);
    expect(w.run(look).stdout).toBe(want);
    expect(readFileSync(join(w.home, 'run', 'vriftd.log'), 'utf8')).not.toMatch(/not published/);
  });

  it('a fresh mount takes writes at once (the daemon knows it before LMDB commits it)', () => {
    const fresh = join(tempDir(), 'fresh');
    const r = w.vrift(['run', '--mount', `${fresh}=${w.tree}`, '--', 'sh', '-c', `echo x > '${fresh}/new' && mkdir '${fresh}/d' && cat '${fresh}/new'`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('x\n');
    expect(w.vrift(['unmount', fresh]).code).toBe(0);
  });

  it('unmount drops the upper layer: moved aside at once, deleted in the background, leftovers swept at the next start', async () => {
    const fresh = join(tempDir(), 'dropped');
    const r = w.vrift(['run', '--mount', `${fresh}=${w.tree}`, '--', 'sh', '-c', `mkdir -p '${fresh}/out/a' && for i in $(seq 1 300); do echo $i > '${fresh}/out/a/f'$i; done`]);
    expect(r.code, r.stderr).toBe(0);
    const upperRoot = join(w.home, 'upper');
    const before = new Set(readdirSync(upperRoot));
    expect(w.vrift(['unmount', fresh]).code).toBe(0);
    const layers = () => readdirSync(upperRoot).filter((n) => !before.has(n) || n.startsWith('.gone-'));
    // the mount's own directory is gone at once; the one set aside goes soon after
    expect(readdirSync(upperRoot).filter((n) => before.has(n) && !n.startsWith('.gone-')).length).toBe(before.size - 1);
    for (let i = 0; i < 100 && layers().length > 0; i++) await new Promise((res) => setTimeout(res, 50));
    expect(layers()).toEqual([]);
    // a daemon stopped while deleting one: the next start sweeps it
    mkdirSync(join(upperRoot, '.gone-m-0123.cafe', 'x'), { recursive: true });
    writeFileSync(join(upperRoot, '.gone-m-0123.cafe', 'x', 'f'), 'left\n');
    expect(w.vrift(['down']).code).toBe(0);
    expect(w.vrift(['up', '--detach']).code).toBe(0);
    for (let i = 0; i < 100 && existsSync(join(upperRoot, '.gone-m-0123.cafe')); i++) await new Promise((res) => setTimeout(res, 50));
    expect(existsSync(join(upperRoot, '.gone-m-0123.cafe'))).toBe(false);
    expect(w.run('true').code).toBe(0); // the mount of the world still works
  });

  it('staged files live beside the CAS and are gone after commit', () => {
    expect(w.run(`cd '${w.mnt}' && for i in 1 2 3 4 5; do echo $i > n$i; done`).code).toBe(0);
    const staging = join(w.home, 'staging');
    expect(existsSync(staging) ? readdirSync(staging) : []).toEqual([]);
    expect(readFileSync(join(w.home, 'run', 'vriftd.log'), 'utf8')).not.toContain('failed');
  });
});
