// The control-socket protocol, mirrored from shim/vrift_proto.h (the spec).
// test/daemon/proto.spec.ts checks both sides encode the same bytes.

export const MAGIC = 0x54465256;
export const VERSION = 1;
export const HEADER_SIZE = 16;
export const MAX_PAYLOAD = 1 << 20;
const FIELD_HEADER = 6;

export const Msg = {
  HELLO: 1,
  STATUS: 2,
  MOUNT: 3,
  UNMOUNT: 4,
  FETCH: 6,
  MKDIR: 7,
  UNLINK: 8,
  RMDIR: 9,
  RENAME: 10,
  SYMLINK: 11,
  SNAPSHOT: 12,
  SHUTDOWN: 13,
  MOUNTS: 14,
  CHMOD: 15,
  NODE_JOIN: 16,
  NODE_LEAVE: 17,
  NODE_PEERS: 18,
  NODE_PENALIZE: 19,
  OP: 20,
  UPPER: 21,
  LINK: 22,
  NSFARM: 23,
  NSMERGE: 24,
  JOURNAL: 25,
  OK: 0x100,
  ERROR: 0x101,
  EVENT: 0x102,
} as const;

export const F = {
  TREE: 1,
  PATH: 2,
  PROJECT: 3,
  REL: 4,
  MODE: 6,
  DIGEST: 7,
  JSON: 8,
  ERR_CODE: 9,
  ERR_MSG: 10,
  SHM_NAME: 11,
  TARGET: 12,
  REL2: 13,
  PID: 14,
  VERSION: 15,
  SIZE: 16,
  HOME: 17,
  MOUNT_ENTRY: 18,
  ADDR: 19,
  PEER: 20,
  HINT: 21,
  EXIT: 22,
  BASE: 23,
  RUN_DIR: 24,
  SEQ: 26,
  CHANGE: 27,
  NOW: 28,
  STREAM: 29,
  CTIME: 30,
} as const;

/** Digests one NODE_PEERS request may ask about. */
export const MAX_PEERS_DIGESTS = 16_384;

/** What the CLI sends in an OP request's JSON field (src/cli/operation-client.ts → src/node/daemon/operations.ts). */
export interface OpRequest {
  op: string;
  args: Record<string, unknown>;
  /** The client's VRIFT_* variables. */
  env: Record<string, string>;
  /** The client's mount namespace (readlink /proc/self/ns/mnt), if it could read it. */
  mntns?: string;
}

/** What an EVENT frame of an operation carries (JSON). */
export type OpEvent =
  | { kind: 'progress'; label: string; bytes: boolean; done: number; total: number }
  | { kind: 'progress-end'; label: string }
  | { kind: 'warn'; message: string }
  | { kind: 'notice'; message: string };

export type FieldValue = string | { u32: number } | { u64: number | bigint } | Uint8Array;
export type FieldList = [tag: number, value: FieldValue][];

export interface Frame {
  type: number;
  id: number;
  fields: Fields;
}

function valueBytes(v: FieldValue): Buffer {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if ('u32' in v) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v.u32 >>> 0);
    return b;
  }
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v.u64));
  return b;
}

export function encodeFrame(type: number, id: number, fields: FieldList = []): Buffer {
  const parts = fields.map(([tag, v]) => {
    const val = valueBytes(v);
    const h = Buffer.alloc(FIELD_HEADER);
    h.writeUInt16LE(tag, 0);
    h.writeUInt32LE(val.length, 2);
    return Buffer.concat([h, val]);
  });
  const payload = Buffer.concat(parts);
  if (payload.length > MAX_PAYLOAD) throw new Error(`control frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt16LE(VERSION, 4);
  h.writeUInt16LE(type, 6);
  h.writeUInt32LE(id >>> 0, 8);
  h.writeUInt32LE(payload.length, 12);
  return Buffer.concat([h, payload]);
}

/** The fields of a payload, parsed and bounds-checked. */
export class Fields {
  private constructor(private readonly map: Map<number, Buffer[]>) {}

  /** Parses a payload; returns a reason string when it is malformed. */
  static parse(payload: Buffer): Fields | string {
    const map = new Map<number, Buffer[]>();
    let off = 0;
    while (off < payload.length) {
      if (payload.length - off < FIELD_HEADER) return 'truncated field header';
      const tag = payload.readUInt16LE(off);
      const len = payload.readUInt32LE(off + 2);
      if (payload.length - off - FIELD_HEADER < len) return `field ${tag} runs past the end of the payload`;
      const v = payload.subarray(off + FIELD_HEADER, off + FIELD_HEADER + len);
      const list = map.get(tag);
      if (list) list.push(v);
      else map.set(tag, [v]);
      off += FIELD_HEADER + len;
    }
    return new Fields(map);
  }

  has(tag: number): boolean {
    return this.map.has(tag);
  }

  str(tag: number): string | undefined {
    return this.map.get(tag)?.[0]?.toString('utf8');
  }

  strs(tag: number): string[] {
    return (this.map.get(tag) ?? []).map((b) => b.toString('utf8'));
  }

  u32(tag: number): number | undefined {
    const b = this.map.get(tag)?.[0];
    return b && b.length === 4 ? b.readUInt32LE(0) : undefined;
  }

  u64(tag: number): number | undefined {
    const b = this.map.get(tag)?.[0];
    return b && b.length === 8 ? Number(b.readBigUInt64LE(0)) : undefined;
  }
}

export type DecodeEvent = { frame: Frame } | { error: { fatal: boolean; code: string; message: string; id: number } };

/**
 * Splits a byte stream into frames. A bad header is fatal (the stream
 * cannot be resynchronised); a bad payload is not.
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private dead = false;

  push(chunk: Buffer): DecodeEvent[] {
    if (this.dead) return [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: DecodeEvent[] = [];
    while (this.buf.length >= HEADER_SIZE) {
      const magic = this.buf.readUInt32LE(0);
      const version = this.buf.readUInt16LE(4);
      const type = this.buf.readUInt16LE(6);
      const id = this.buf.readUInt32LE(8);
      const length = this.buf.readUInt32LE(12);
      const fatal = (code: string, message: string): DecodeEvent => {
        this.dead = true;
        return { error: { fatal: true, code, message, id } };
      };
      if (magic !== MAGIC) {
        out.push(fatal('ERR_VRIFT_PROTO_MAGIC', 'not a vrift control frame (bad magic)'));
        return out;
      }
      if (version !== VERSION) {
        out.push(fatal('ERR_VRIFT_PROTO_VERSION', `protocol version ${version} is not supported (this daemon speaks ${VERSION})`));
        return out;
      }
      if (length > MAX_PAYLOAD) {
        out.push(fatal('ERR_VRIFT_PROTO_TOO_LARGE', `frame of ${length} bytes exceeds the ${MAX_PAYLOAD}-byte limit`));
        return out;
      }
      if (this.buf.length < HEADER_SIZE + length) break;
      const payload = this.buf.subarray(HEADER_SIZE, HEADER_SIZE + length);
      this.buf = this.buf.subarray(HEADER_SIZE + length);
      const fields = Fields.parse(payload);
      if (typeof fields === 'string') out.push({ error: { fatal: false, code: 'ERR_VRIFT_PROTO_PAYLOAD', message: `malformed payload: ${fields}`, id } });
      else out.push({ frame: { type, id, fields } });
    }
    return out;
  }
}
