// Large blobs that stream (src/node/stream/hsm.ts, shim/keeper.c): real
// readers (python, head) of a file still being written wait in the kernel
// until the bytes they read are verified, get EIO once the stream failed,
// and keep waiting across a daemon crash until a new daemon resumes the
// stream or the keeper's grace period ends. Needs root and a kernel with
// fanotify pre-content events; the temp dir must be ext4/xfs/btrfs.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Hsm, keeperSocket } from '../../src/node/stream/hsm.js';
import { runBounded, spawnBounded, type BoundedResult } from '../helpers/bounded.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1 << 20;
const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const HSM_JS = join(import.meta.dirname, '..', '..', 'dist', 'src', 'node', 'stream', 'hsm.js');
/** Long enough for a blocked reader to have returned if it were not blocked. */
const STILL_MS = 400;

// Each argument `pread:<off>:<len>` or `mmap:<off>:<len>` (maps the whole
// file) prints `ok <sha256>` or `err <errno>`, in order, as it finishes.
const READER = `
import hashlib, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for op in sys.argv[2:]:
    kind, off, n = op.split(':'); off = int(off); n = int(n)
    try:
        if kind == 'pread':
            b = os.pread(fd, n, off)
        else:
            m = mmap.mmap(fd, 0, prot=mmap.PROT_READ); b = m[off:off + n]; m.close()
        print('ok', hashlib.sha256(b).hexdigest(), flush=True)
    except OSError as e:
        print('err', e.errno, flush=True)
`;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** `ok <sha>` of data[off, off+len). */
function okOf(data: Buffer, off: number, len: number): string {
  return `ok ${sha(data.subarray(off, off + len))}`;
}

function reader(path: string, ops: string[]) {
  const r = spawnBounded(PY, ['-c', READER, path, ...ops], { timeoutMs: 45_000 });
  const running = () => r.child.exitCode === null && r.child.signalCode === null;
  return { ...r, running, lines: async () => (await r.done).stdout.trim().split('\n') };
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** Random letters (so `head` output compares as a string). */
function letters(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) b[i] = 97 + (b[i]! % 26);
  return b;
}

async function openHsm(dir: string, logs: string[] = [], graceMs = 1500): Promise<Hsm> {
  const r = await Hsm.open({ runDir: join(dir, 'run'), probeDir: dir, log: (l) => logs.push(l), graceMs });
  if (!r.hsm) throw new Error(`Hsm.open: ${r.reason}`);
  return r.hsm;
}

/** A file at its full size with `prefix` bytes of `data` written, and the writer fd (opened before the mark). */
function partialFile(path: string, data: Buffer, prefix: number): number {
  const w = openSync(path, 'w+');
  ftruncateSync(w, data.length);
  writeSync(w, data, 0, prefix, 0);
  return w;
}

function keeperPid(runDir: string): number {
  return Number(readFileSync(`${keeperSocket(runDir)}.lock`, 'utf8').trim());
}

/** True while `pid` runs (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`still not ${what} after ${ms} ms`);
    await sleep(50);
  }
}

/**
 * A daemon in a child node process (the compiled hsm.js): it writes the
 * first `prefix` bytes of `src` into `path`, watches it, reports `prefix`
 * verified, prints `ready` and waits to be killed.
 */
function daemonChild(o: { runDir: string; probeDir: string; src: string; path: string; id: string; prefix: number; graceMs: number }) {
  const script = `
    const { Hsm } = await import(${JSON.stringify(HSM_JS)});
    const fs = await import('node:fs');
    const o = ${JSON.stringify(o)};
    const r = await Hsm.open({ runDir: o.runDir, probeDir: o.probeDir, graceMs: o.graceMs, log: (l) => process.stderr.write(l + '\\n') });
    if (!r.hsm) { console.log('no hsm: ' + r.reason); process.exit(1); }
    const data = fs.readFileSync(o.src);
    const w = fs.openSync(o.path, 'w+');
    fs.ftruncateSync(w, data.length);
    fs.writeSync(w, data, 0, o.prefix, 0);
    const s = await r.hsm.watch(o.path, { id: o.id, size: data.length });
    s.progress(o.prefix);
    await r.hsm.watch(o.path + '.none', { id: 'x', size: 1 }).catch(() => {}); // a round trip: progress has arrived
    console.log('ready');
    setInterval(() => {}, 60_000);
  `;
  const d = spawnBounded(process.execPath, ['--input-type=module', '-e', script], { timeoutMs: 60_000 });
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    d.child.stdout!.on('data', (b) => {
      out += b;
      if (out.includes('ready')) resolve();
    });
    d.done.then((r: BoundedResult) => reject(new Error(`daemon child exited ${r.code}: ${r.stdout}${r.stderr}`)));
  });
  return { ...d, ready };
}

describe('large files stream (fanotify pre-content)', () => {
  it('a read past the verified prefix waits until progress covers it; a read within it returns at once', async () => {
    const dir = tempDir('vrift-hsm-');
    const hsm = await openHsm(dir);
    const size = 4 * MiB;
    const data = randomBytes(size);
    const path = join(dir, 'blob');
    const w = partialFile(path, data, MiB);
    const s = await hsm.watch(path, { id: 'range', size });
    s.progress(MiB);

    const far = reader(path, [`pread:${3 * MiB + 5}:10000`]);
    const near = reader(path, [`pread:0:${MiB}`, `pread:4096:100`]);
    expect(await near.lines()).toEqual([okOf(data, 0, MiB), okOf(data, 4096, 100)]);
    await sleep(STILL_MS);
    expect(far.running()).toBe(true);

    writeSync(w, data, MiB, size - MiB, MiB);
    s.progress(2 * MiB);
    await sleep(STILL_MS);
    expect(far.running()).toBe(true); // 2 MiB verified does not cover 3 MiB + 5
    s.progress(size);
    expect(await far.lines()).toEqual([okOf(data, 3 * MiB + 5, 10000)]);
    await s.complete();
    closeSync(w);
    await hsm.close();
  });

  it('head -c of the start of a 64 MiB file returns while the rest is unwritten', async () => {
    const dir = tempDir('vrift-hsm-');
    const hsm = await openHsm(dir);
    const size = 64 * MiB;
    const chunk = letters(MiB);
    const path = join(dir, 'big');
    const w = partialFile(path, chunk, MiB);
    ftruncateSync(w, size);
    const s = await hsm.watch(path, { id: 'big', size });
    s.progress(MiB);
    const tail = reader(path, [`pread:${60 * MiB}:4096`]);
    const head = spawnBounded('head', ['-c', '5000', path], { timeoutMs: 20_000 });
    const r = await head.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(chunk.subarray(0, 5000).toString());
    await sleep(STILL_MS);
    expect(tail.running()).toBe(true);
    for (let at = MiB; at < size; at += MiB) writeSync(w, chunk, 0, MiB, at);
    await s.complete();
    expect(await tail.lines()).toEqual([okOf(chunk, 0, 4096)]);
    closeSync(w);
    await hsm.close();
  });

  it('mmap waits for the whole mapping to be verified, then sees the right bytes', async () => {
    const dir = tempDir('vrift-hsm-');
    const hsm = await openHsm(dir);
    const size = 8 * MiB;
    const data = randomBytes(size);
    const path = join(dir, 'mapped');
    const w = partialFile(path, data, 4 * MiB);
    const s = await hsm.watch(path, { id: 'mapped', size });
    s.progress(4 * MiB);
    const m = reader(path, [`mmap:0:4096`, `mmap:${7 * MiB}:${MiB}`]);
    await sleep(STILL_MS);
    expect(m.running()).toBe(true); // the mapping covers unverified bytes
    writeSync(w, data, 4 * MiB, 4 * MiB, 4 * MiB);
    await s.complete();
    expect(await m.lines()).toEqual([okOf(data, 0, 4096), okOf(data, 7 * MiB, MiB)]);
    closeSync(w);
    await hsm.close();
  });

  it('fail: waiting and later reads of unverified ranges get EIO; verified ranges stay readable', async () => {
    const dir = tempDir('vrift-hsm-');
    const hsm = await openHsm(dir);
    const size = 4 * MiB;
    const data = randomBytes(size);
    const path = join(dir, 'failing');
    const w = partialFile(path, data, MiB);
    const s = await hsm.watch(path, { id: 'failing', size });
    s.progress(MiB);
    const waiting = reader(path, [`pread:${3 * MiB}:4096`]);
    await sleep(STILL_MS);
    expect(waiting.running()).toBe(true);
    s.fail('test: the source lied');
    expect(await waiting.lines()).toEqual(['err 5']);
    closeSync(w);
    const later = reader(path, [`pread:0:4096`, `pread:${2 * MiB}:10`, `mmap:0:10`, `pread:${MiB - 10}:10`]);
    expect(await later.lines()).toEqual([okOf(data, 0, 4096), 'err 5', 'err 5', okOf(data, MiB - 10, 10)]);
    await hsm.close();
  });

  it('a daemon killed mid-stream: the reader keeps waiting; a new daemon resumes the orphan and releases it', async () => {
    const dir = tempDir('vrift-hsm-');
    const runDir = join(dir, 'run');
    const size = 4 * MiB;
    const data = randomBytes(size);
    const src = join(dir, 'src');
    writeFileSync(src, data);
    const path = join(dir, 'orphan');
    const d = daemonChild({ runDir, probeDir: dir, src, path, id: 'orphan1', prefix: MiB, graceMs: 10_000 });
    await d.ready;
    const waiting = reader(path, [`pread:${3 * MiB}:4096`]);
    await sleep(STILL_MS);
    expect(waiting.running()).toBe(true);
    d.kill();
    await d.done;
    await sleep(STILL_MS);
    expect(waiting.running()).toBe(true); // not the zeros of the sparse file

    const logs: string[] = [];
    const hsm = await openHsm(dir, logs);
    expect(hsm.orphans()).toEqual([{ id: 'orphan1', path, size, verified: MiB }]);
    const s = hsm.resume(hsm.orphans()[0]!);
    expect(waiting.running()).toBe(true);
    // This daemon opens the file after the mark: its writes raise events, allowed for its pid.
    const w = openSync(path, 'r+');
    writeSync(w, data, MiB, size - MiB, MiB);
    closeSync(w);
    s.progress(size);
    await s.complete();
    expect(await waiting.lines()).toEqual([okOf(data, 3 * MiB, 4096)]);
    await hsm.close();
  });

  it('a daemon killed and none coming back: the reader gets EIO after the grace period, and the keeper exits', async () => {
    const dir = tempDir('vrift-hsm-');
    const runDir = join(dir, 'run');
    const size = 2 * MiB;
    const src = join(dir, 'src');
    writeFileSync(src, randomBytes(size));
    const path = join(dir, 'abandoned');
    const d = daemonChild({ runDir, probeDir: dir, src, path, id: 'abandoned', prefix: MiB, graceMs: 1500 });
    await d.ready;
    const pid = keeperPid(runDir);
    const waiting = reader(path, [`pread:${MiB + 1}:10`]);
    await sleep(STILL_MS);
    d.kill();
    const killedAt = Date.now();
    await d.done;
    expect(await waiting.lines()).toEqual(['err 5']);
    expect(Date.now() - killedAt).toBeGreaterThan(1000);
    expect((await reader(path, [`pread:${MiB}:10`, 'pread:0:10']).lines())[0]).toBe('err 5');
    // The next daemon removes the failed temp file; unlinked and open nowhere, the mark goes, then the idle keeper.
    unlinkSync(path);
    await until('gone', () => !alive(pid), 20_000);
    expect(existsSync(keeperSocket(runDir))).toBe(false);
    expect(readFileSync(join(runDir, 'keeper.log'), 'utf8')).toMatch(/nothing left to keep/);
  });

  it('the keeper answers bad lines with err and keeps serving; one keeper per socket', async () => {
    const dir = tempDir('vrift-hsm-');
    const hsm = await openHsm(dir);
    const runDir = join(dir, 'run');
    const pid = keeperPid(runDir);
    const sock = connect(keeperSocket(runDir));
    let got = '';
    sock.on('data', (b) => (got += b));
    await new Promise((res) => sock.once('connect', res));
    const junk = ['bogus', 'watch', 'watch ../x 1', 'watch id notanumber /x', 'progress nosuch 5', 'done', 'x'.repeat(10_000), 'fail a b', 'watch ok1 1 /nonexistent', 'hello'];
    sock.write(junk.join('\n') + '\n');
    await until('answered', () => got.includes('end'), 5_000);
    const lines = got.trim().split('\n');
    expect(lines.slice(0, -1).every((l) => l.startsWith('err '))).toBe(true);
    expect(lines.length).toBe(junk.length);
    sock.end();
    // A second Hsm.open (and keeper start) joins the same keeper.
    const again = await openHsm(dir);
    expect(keeperPid(runDir)).toBe(pid);
    expect(alive(pid)).toBe(true);
    const path = join(dir, 'after');
    const data = randomBytes(MiB);
    const w = partialFile(path, data, MiB);
    const s = await again.watch(path, { id: 'after', size: MiB });
    await s.complete();
    closeSync(w);
    expect(await reader(path, ['pread:0:100']).lines()).toEqual([okOf(data, 0, 100)]);
    await again.close();
    await hsm.close();
  });

  describe('where streaming cannot work', () => {
    const mnt = join(tempDir('vrift-hsm-tmpfs-'), 'mnt');
    afterAll(() => {
      runBounded('umount', ['-l', mnt], { timeoutMs: 10_000 });
    });

    it('Hsm.open on a tmpfs probe dir gives a reason instead of an Hsm', async () => {
      mkdirSync(mnt);
      const m = runBounded('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'vrift-hsm-test', mnt], { timeoutMs: 10_000 });
      expect(m.code, m.stderr).toBe(0);
      const r = await Hsm.open({ runDir: join(mnt, 'run'), probeDir: mnt, log: () => {} });
      expect(r.hsm).toBeUndefined();
      expect(r.reason).toMatch(/filesystem .* no fanotify pre-content support/);
      expect(existsSync(keeperSocket(join(mnt, 'run')))).toBe(false); // no keeper was started
    });
  });
});
