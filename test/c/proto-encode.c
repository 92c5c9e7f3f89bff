/* Encodes sample control frames with shim/vrift_proto.h and prints them as
 * hex, one per line, plus the header's constants as JSON: the TypeScript
 * mirror (src/node/control/protocol.ts) must produce the same bytes. */
#include <stdio.h>
#include "vrift_proto.h"

static void hex(const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
  printf("\n");
}

int main(void) {
  uint8_t buf[4096];
  size_t n;

  /* 1. HELLO, id 1, no fields. */
  n = vrift_proto_header(buf, sizeof buf, VRIFT_MSG_HELLO, 1, 0);
  hex(buf, n);

  /* 2. MOUNT, id 7: TREE, PATH, PROJECT. */
  uint8_t payload[1024];
  size_t p = 0;
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_TREE, "ci/node_modules/abc");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_PATH, "/work/app/node_modules");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_PROJECT, "app");
  n = vrift_proto_header(buf, sizeof buf, VRIFT_MSG_MOUNT, 7, (uint32_t)p);
  memcpy(buf + n, payload, p);
  hex(buf, n + p);

  /* 3. UPPER, id 0xdeadbeef: PATH, REL, DIGEST, BASE, MODE (u32). */
  p = 0;
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_PATH, "/m");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_REL, "out/main.o");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_DIGEST, "0a1b");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_BASE, "ffee");
  p += vrift_proto_field_u32(payload + p, sizeof payload - p, VRIFT_F_MODE, 0100755);
  n = vrift_proto_header(buf, sizeof buf, VRIFT_MSG_UPPER, 0xdeadbeefu, (uint32_t)p);
  memcpy(buf + n, payload, p);
  hex(buf, n + p);

  /* 4. ERROR reply with an empty string field and a UTF-8 one. */
  p = 0;
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_ERR_CODE, "");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_ERR_MSG, "caf\xc3\xa9 \xe2\x9c\x93");
  n = vrift_proto_header(buf, sizeof buf, VRIFT_MSG_ERROR, 2, (uint32_t)p);
  memcpy(buf + n, payload, p);
  hex(buf, n + p);

  /* 5. NODE_PEERS, id 9: TREE and two DIGESTs (a repeated field). */
  p = 0;
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_TREE, "aa");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_DIGEST, "bb");
  p += vrift_proto_field_str(payload + p, sizeof payload - p, VRIFT_F_DIGEST, "cc");
  n = vrift_proto_header(buf, sizeof buf, VRIFT_MSG_NODE_PEERS, 9, (uint32_t)p);
  memcpy(buf + n, payload, p);
  hex(buf, n + p);

  /* The constants. */
  printf("{\"MAGIC\":%u,\"VERSION\":%u,\"HEADER_SIZE\":%u,\"MAX_PAYLOAD\":%u,", VRIFT_PROTO_MAGIC, VRIFT_PROTO_VERSION,
         VRIFT_PROTO_HEADER_SIZE, VRIFT_PROTO_MAX_PAYLOAD);
  printf("\"Msg\":{\"HELLO\":%d,\"STATUS\":%d,\"MOUNT\":%d,\"UNMOUNT\":%d,\"FETCH\":%d,\"MKDIR\":%d,"
         "\"UNLINK\":%d,\"RMDIR\":%d,\"RENAME\":%d,\"SYMLINK\":%d,\"SNAPSHOT\":%d,\"SHUTDOWN\":%d,\"MOUNTS\":%d,\"CHMOD\":%d,"
         "\"NODE_JOIN\":%d,\"NODE_LEAVE\":%d,\"NODE_PEERS\":%d,\"NODE_PENALIZE\":%d,\"OP\":%d,\"UPPER\":%d,\"LINK\":%d,\"NSFARM\":%d,\"NSMERGE\":%d,\"JOURNAL\":%d,\"OK\":%d,\"ERROR\":%d,\"EVENT\":%d},",
         VRIFT_MSG_HELLO, VRIFT_MSG_STATUS, VRIFT_MSG_MOUNT, VRIFT_MSG_UNMOUNT, VRIFT_MSG_FETCH, VRIFT_MSG_MKDIR,
         VRIFT_MSG_UNLINK, VRIFT_MSG_RMDIR, VRIFT_MSG_RENAME, VRIFT_MSG_SYMLINK, VRIFT_MSG_SNAPSHOT, VRIFT_MSG_SHUTDOWN,
         VRIFT_MSG_MOUNTS, VRIFT_MSG_CHMOD, VRIFT_MSG_NODE_JOIN, VRIFT_MSG_NODE_LEAVE, VRIFT_MSG_NODE_PEERS, VRIFT_MSG_NODE_PENALIZE,
         VRIFT_MSG_OP, VRIFT_MSG_UPPER, VRIFT_MSG_LINK, VRIFT_MSG_NSFARM, VRIFT_MSG_NSMERGE, VRIFT_MSG_JOURNAL, VRIFT_MSG_OK, VRIFT_MSG_ERROR, VRIFT_MSG_EVENT);
  printf("\"F\":{\"TREE\":%d,\"PATH\":%d,\"PROJECT\":%d,\"REL\":%d,\"MODE\":%d,\"DIGEST\":%d,\"JSON\":%d,"
         "\"ERR_CODE\":%d,\"ERR_MSG\":%d,\"SHM_NAME\":%d,\"TARGET\":%d,\"REL2\":%d,\"PID\":%d,\"VERSION\":%d,\"SIZE\":%d,"
         "\"HOME\":%d,\"MOUNT_ENTRY\":%d,\"ADDR\":%d,\"PEER\":%d,\"HINT\":%d,\"EXIT\":%d,\"BASE\":%d,\"RUN_DIR\":%d,\"SEQ\":%d,\"CHANGE\":%d,\"NOW\":%d,\"STREAM\":%d,\"CTIME\":%d}}\n",
         VRIFT_F_TREE, VRIFT_F_PATH, VRIFT_F_PROJECT, VRIFT_F_REL, VRIFT_F_MODE, VRIFT_F_DIGEST, VRIFT_F_JSON,
         VRIFT_F_ERR_CODE, VRIFT_F_ERR_MSG, VRIFT_F_SHM_NAME, VRIFT_F_TARGET, VRIFT_F_REL2, VRIFT_F_PID, VRIFT_F_VERSION,
         VRIFT_F_SIZE, VRIFT_F_HOME, VRIFT_F_MOUNT_ENTRY, VRIFT_F_ADDR, VRIFT_F_PEER, VRIFT_F_HINT, VRIFT_F_EXIT, VRIFT_F_BASE, VRIFT_F_RUN_DIR, VRIFT_F_SEQ, VRIFT_F_CHANGE, VRIFT_F_NOW, VRIFT_F_STREAM, VRIFT_F_CTIME);
  return 0;
}
