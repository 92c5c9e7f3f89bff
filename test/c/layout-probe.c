/* layout-probe <cas_root> <64 hex digest>
 *
 * Prints, as one JSON object, every constant of shim/vrift_layout.h
 * (grouped as the addon's `layout` and src/gen/layout.ts group them) and
 * the CAS paths of the digest and of its executable twin, made the way the
 * shim makes them: from the 32-byte digest a VDir entry holds, through
 * vrift_layout_hex and vrift_layout_blob_rel. test/node/layout-golden.spec.ts
 * compares it with TypeScript, the addon and literal golden values. */
#include <stdio.h>
#include <string.h>

#include "vrift_layout.h"

static void str(const char *key, const char *s, const char *sep)
{
  printf("\"%s\":\"", key);
  for (; *s; s++) {
    if (*s == '\n')
      printf("\\n");
    else if (*s == '"' || *s == '\\')
      printf("\\%c", *s);
    else
      putchar(*s);
  }
  printf("\"%s", sep);
}

static void chr(const char *key, char c, const char *sep)
{
  const char s[2] = {c, '\0'};
  str(key, s, sep);
}

static void num(const char *key, long v, const char *sep) { printf("\"%s\":%ld%s", key, v, sep); }

static int unhex(const char *hex, uint8_t out[VRIFT_LAYOUT_DIGEST_BYTES])
{
  if (strlen(hex) != VRIFT_LAYOUT_DIGEST_HEX)
    return -1;
  for (int i = 0; i < VRIFT_LAYOUT_DIGEST_BYTES; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1)
      return -1;
    out[i] = (uint8_t)v;
  }
  return 0;
}

int main(int argc, char **argv)
{
  uint8_t digest[VRIFT_LAYOUT_DIGEST_BYTES];
  if (argc != 3 || unhex(argv[2], digest) != 0) {
    fprintf(stderr, "usage: layout-probe <cas_root> <64 hex digest>\n");
    return 2;
  }
  char hex[VRIFT_LAYOUT_DIGEST_HEX];
  vrift_layout_hex(digest, hex);
  char plain[VRIFT_LAYOUT_BLOB_REL_SIZE], exec[VRIFT_LAYOUT_BLOB_REL_SIZE];
  size_t np = vrift_layout_blob_rel(hex, 0, plain);
  size_t nx = vrift_layout_blob_rel(hex, 1, exec);
  if (np != strlen(plain) || nx != strlen(exec) || nx + 1 != sizeof exec) {
    fprintf(stderr, "layout-probe: vrift_layout_blob_rel returned the wrong length\n");
    return 1;
  }

  printf("{\"home\":{");
  str("cas", VRIFT_LAYOUT_CAS_DIR, ",");
  str("tmp", VRIFT_LAYOUT_TMP_DIR, ",");
  str("upper", VRIFT_LAYOUT_UPPER_DIR, ",");
  str("upperIssued", VRIFT_LAYOUT_UPPER_ISSUED, ",");
  str("upperJournal", VRIFT_LAYOUT_UPPER_JOURNAL, ",");
  str("farm", VRIFT_LAYOUT_FARM_DIR, ",");
  str("quarantine", VRIFT_LAYOUT_QUARANTINE_DIR, ",");
  str("meta", VRIFT_LAYOUT_META_DIR, ",");
  str("run", VRIFT_LAYOUT_RUN_DIR, ",");
  str("socket", VRIFT_LAYOUT_SOCKET_NAME, ",");
  str("shimWarnedPrefix", VRIFT_LAYOUT_SHIM_WARNED_PREFIX, "");
  printf("},\"blob\":{");
  num("digestHex", VRIFT_LAYOUT_DIGEST_HEX, ",");
  num("shardHex", VRIFT_LAYOUT_SHARD_HEX, ",");
  str("execSuffix", VRIFT_LAYOUT_EXEC_SUFFIX, ",");
  num("mode", VRIFT_LAYOUT_BLOB_MODE, ",");
  num("execMode", VRIFT_LAYOUT_EXEC_MODE, ",");
  num("mtimeSec", VRIFT_LAYOUT_BLOB_MTIME_SEC, "");
  printf("},\"tree\":{");
  str("header", VRIFT_TREE_HEADER, ",");
  str("namesHeader", VRIFT_NAMES_HEADER, ",");
  chr("kindFile", VRIFT_TREE_KIND_FILE, ",");
  chr("kindDir", VRIFT_TREE_KIND_DIR, ",");
  chr("kindSymlink", VRIFT_TREE_KIND_SYMLINK, ",");
  num("modeFile", VRIFT_TREE_MODE_FILE, ",");
  num("modeExec", VRIFT_TREE_MODE_EXEC, ",");
  num("modeDir", VRIFT_TREE_MODE_DIR, ",");
  num("modeSymlink", VRIFT_TREE_MODE_SYMLINK, ",");
  str("noRef", VRIFT_TREE_NO_REF, ",");
  num("pathMax", VRIFT_TREE_PATH_MAX, ",");
  num("nameMax", VRIFT_TREE_NAME_MAX, "");
  printf("},\"paths\":{\"plain\":\"%s/%s\",\"exec\":\"%s/%s\"}}\n", argv[1], plain, argv[1], exec);
  return 0;
}
