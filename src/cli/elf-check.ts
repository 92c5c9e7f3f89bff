// Which programs the shim cannot see into: it works by LD_PRELOAD, so a
// program must be dynamically linked against libc, not setuid/setgid (the
// loader ignores LD_PRELOAD for those), and do its file I/O through libc
// (Go programs call the kernel directly). Scripts are judged by their
// interpreter.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { basename, delimiter, join } from 'node:path';

const PT_INTERP = 3;
const PT_NOTE = 4;
const ET_EXEC = 2;
const ET_DYN = 3;

/** Finds `cmd` the way execvp does (a name with a '/' is taken as is). */
export function which(cmd: string, pathEnv = process.env.PATH ?? '/usr/bin:/bin'): string | undefined {
  if (cmd.includes('/')) return cmd;
  for (const dir of pathEnv.split(delimiter)) {
    const p = join(dir === '' ? '.' : dir, cmd);
    try {
      const st = statSync(p);
      if (st.isFile() && st.mode & 0o111) return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

function readHead(path: string, bytes: number, at = 0): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, at);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Why the shim cannot serve `path` (a real executable), or undefined when
 * it can. Unreadable or non-ELF files are left to the kernel to judge.
 */
export function unshimmable(path: string, depth = 0): string | undefined {
  let st;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  if (st.mode & 0o6000) return 'is setuid/setgid (the dynamic loader ignores LD_PRELOAD for it)';
  let head: Buffer;
  try {
    head = readHead(path, 4096);
  } catch {
    return undefined;
  }
  if (head[0] === 0x23 && head[1] === 0x21 && depth < 4) {
    const line = head.toString('latin1', 2, head.indexOf(10) < 0 ? head.length : head.indexOf(10)).trim();
    const interp = line.split(/[ \t]+/)[0];
    if (!interp) return undefined;
    const why = unshimmable(interp, depth + 1);
    return why ? `runs under ${interp}, which ${why}` : undefined;
  }
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) return undefined;
  const type = head.readUInt16LE(16);
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  let ph: Buffer;
  try {
    ph = readHead(path, phentsize * phnum, phoff);
  } catch {
    return undefined;
  }
  let interp = false;
  const notes: [number, number][] = [];
  for (let i = 0; i + 1 <= phnum && (i + 1) * phentsize <= ph.length; i++) {
    const o = i * phentsize;
    const t = ph.readUInt32LE(o);
    if (t === PT_INTERP) interp = true;
    if (t === PT_NOTE) notes.push([Number(ph.readBigUInt64LE(o + 8)), Number(ph.readBigUInt64LE(o + 32))]);
  }
  if (!interp && (type === ET_EXEC || (type === ET_DYN && !basename(path).startsWith('ld-')))) return 'is statically linked';
  for (const [off, size] of notes) {
    if (size > 1 << 16) continue;
    const n = readHead(path, size, off);
    for (let o = 0; o + 12 <= n.length; ) {
      const nsz = n.readUInt32LE(o);
      const dsz = n.readUInt32LE(o + 4);
      if (nsz === 3 && n.toString('latin1', o + 12, o + 14) === 'Go') return 'is a Go program (it calls the kernel directly)';
      o += 12 + ((nsz + 3) & ~3) + ((dsz + 3) & ~3);
    }
  }
  return undefined;
}
