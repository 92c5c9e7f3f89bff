// Real programs on a mounted tree, compared with the same programs on a
// `vrift materialize`d copy of the same tree (paths normalized).
import { describe, expect, it } from 'vitest';
import { countFiles, lsComparable, shimWorld } from './harness.js';

const w = shimWorld();

/** Runs `script` in the mount (under the shim) and in the materialized copy (without). */
function both(script: string): { mnt: string; mat: string } {
  const a = w.run(`cd '${w.mnt}' && ${script}`);
  const b = w.plain(`cd '${w.mat}' && ${script}`);
  expect(a.stderr).toBe(b.stderr);
  expect(a.code).toBe(0);
  expect(b.code).toBe(0);
  return { mnt: a.stdout, mat: b.stdout };
}

describe('real programs: mount vs materialized copy', () => {
  it('has thousands of files to look at', () => {
    expect(countFiles(w.src)).toBeGreaterThan(2500);
  });

  it('find -type f | sort', () => {
    const { mnt, mat } = both('find . -type f | sort');
    expect(mnt.split('\n').length).toBeGreaterThan(2500);
    expect(mnt).toBe(mat);
  });

  it('find with tests that stat (-type d/l, -size, -perm, -newer-free)', () => {
    const { mnt, mat } = both('find . \\( -type d -o -type l -o -size +2k -o -perm -u+x \\) -print | sort');
    expect(mnt).toBe(mat);
  });

  it('ls -laR: names, sizes, modes', () => {
    const { mnt, mat } = both('ls -laR --time-style=+X');
    expect(lsComparable(mnt)).toEqual(lsComparable(mat));
  });

  it('sha256sum of every file', () => {
    const { mnt, mat } = both("find . -type f -print0 | sort -z | xargs -0 sha256sum");
    expect(mnt.split('\n').length).toBeGreaterThan(2500);
    expect(mnt).toBe(mat);
  });

  it('tar -c | tar -t, and the archived bytes', () => {
    const list = both('tar -cf - . | tar -tf - | sort');
    expect(list.mnt).toBe(list.mat);
    // the content of every member, through tar's own reads (the materialized
    // copy hard-links identical files: dereference so both archive bytes)
    const bytes = both("tar --sort=name --hard-dereference -cf - node_modules/zod py inc app | tar -xOf - | sha256sum");
    expect(bytes.mnt).toBe(bytes.mat);
  });

  it('python3 imports a package from the tree', () => {
    const script = `PYTHONPATH=$PWD/py python3 -c 'import json, email.mime.text, os; print(os.path.relpath(json.__file__)); print(json.dumps({"a": [1, 2]})); print(email.mime.text.MIMEText("x")["Content-Type"])'`;
    const { mnt, mat } = both(script);
    expect(mnt).toContain('py/json/__init__.py');
    expect(mnt).toBe(mat);
  });

  it('node requires packages from the tree', () => {
    const script = `node -e 'const z = require("./node_modules/zod"); const c = require("./node_modules/commander"); const s = z.object({ n: z.number() }); console.log(s.parse({ n: 1 }).n, typeof c.Command, require("./node_modules/commander/package.json").name, require("path").relative(process.cwd(), require.resolve("./node_modules/zod")), typeof require("./zod-link").z)'`;
    const { mnt, mat } = both(script);
    expect(mnt.trim()).toBe('1 function commander node_modules/zod/index.cjs object');
    expect(mnt).toBe(mat);
  });

  it('node fs: readdir, stat, realpath, readFile', () => {
    const script = `node -e 'const fs = require("fs"); const d = "node_modules/@aws-sdk"; const names = fs.readdirSync(d).sort(); let bytes = 0; for (const n of names) for (const f of fs.readdirSync(d + "/" + n, { withFileTypes: true })) if (f.isFile()) bytes += fs.readFileSync(d + "/" + n + "/" + f.name).length; console.log(names.length, bytes, fs.statSync("inc/greet.h").size, fs.lstatSync("zod-link").isSymbolicLink(), require("path").relative(process.cwd(), fs.realpathSync("app/greet-link.h")), require("path").relative(process.cwd(), fs.realpathSync.native("zod-link")))'`;
    const { mnt, mat } = both(script);
    expect(mnt).toMatch(/^\d+ \d+ \d+ true inc\/greet.h node_modules\/zod\n$/);
    expect(mnt).toBe(mat);
  });

  it('gcc compiles a program whose headers come from the tree', () => {
    const out = (side: string) => `/tmp/vrift-gcc-${process.pid}-${side}`;
    const a = w.run(`cd '${w.mnt}/app' && gcc -I../inc -o ${out('mnt')} main.c && ${out('mnt')} && gcc -I../inc -M main.c | tr -s ' \\\\\\n' '\\n' | sort`);
    const b = w.plain(`cd '${w.mat}/app' && gcc -I../inc -o ${out('mat')} main.c && ${out('mat')} && gcc -I../inc -M main.c | tr -s ' \\\\\\n' '\\n' | sort`);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expect(a.stdout).toContain('hello from the mount 42');
    expect(a.stdout).toContain('../inc/sub/twice.h');
    expect(a.stdout).toBe(b.stdout);
    w.plain(`rm -f ${out('mnt')} ${out('mat')}`);
  });

  it('sh -c pipelines, globs, redirections from the tree, scripts run from the tree', () => {
    const script = [
      'cat py/json/*.py | wc -l',
      'grep -rl "function" node_modules/commander/lib | sort | head -3',
      'ls node_modules/zod/*.json',
      'sort < inc/greet.h | head -1',
      'bin/hello.sh a b',
      './bin/hello.sh c',
      'sh -c "cd app && cat greet-link.h | head -1"',
      'for f in inc/*; do test -e "$f" && echo "$f"; done',
      'test -d node_modules && test -f empty && test -L zod-link && test -x bin/hello.sh && echo tests-ok',
      'cat "name with spaces & ünïcödé.txt"',
      'xargs -n1 basename < /dev/null; echo done',
    ].join('; ');
    const { mnt, mat } = both(script);
    expect(mnt).toContain('tests-ok');
    expect(mnt).toContain('hello from bin/hello.sh with 2: a b');
    expect(mnt).toBe(mat);
  });

  it('a program running from a virtual cwd starts children there', () => {
    const script = 'cd node_modules/zod && pwd -P | sed "s|.*/||" && sh -c "pwd; ls package.json" | sed "s|.*/||" && python3 -c "import os; print(os.path.basename(os.getcwd()), os.path.exists(\\"package.json\\"))"';
    const { mnt, mat } = both(script);
    expect(mnt).toBe('zod\nzod\npackage.json\nzod True\n');
    expect(mnt).toBe(mat);
  });

  it('stdio opens (fopen) and mmap read the CAS bytes', () => {
    const script = `python3 - <<'EOF'
import mmap, hashlib
with open("inc/greet.h", "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    print(hashlib.sha256(m[:]).hexdigest(), len(m))
EOF
awk 'END { print NR }' py/json/decoder.py`;
    const { mnt, mat } = both(script);
    expect(mnt).toBe(mat);
  });

  it('errors match the kernel: missing files, files as directories, writing a directory', () => {
    const script = 'cat nope 2>&1; cat inc/greet.h/x 2>&1; ls -d nope/x 2>&1; cd nope 2>&1; echo x > inc 2>&1; true';
    const a = w.run(`cd '${w.mnt}' && ${script}`);
    const b = w.plain(`cd '${w.mat}' && ${script}`);
    expect(a.stdout.replace(/sh: \d+:/g, 'sh:')).toBe(b.stdout.replace(/sh: \d+:/g, 'sh:'));
  });
});
