// The dynamic loader inside a mount (shim/audit.c, LD_AUDIT): libraries
// found through $ORIGIN, DT_RUNPATH, DT_RPATH and LD_LIBRARY_PATH load
// from a mount, dlopen() of a mount path keeps $ORIGIN working, and pip's
// numpy (which bundles its BLAS in numpy.libs, found by $ORIGIN rpath)
// imports from a mount. Each case is also run the way main ran it before
// (the shim alone, no audit library) to show it failed there.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, linkSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { vdirNameOf } from '../helpers/daemon.js';
import { ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { LIB, shimWorld } from './harness.js';

const AUDIT = join(ROOT, 'shim', 'build', 'libvrift-audit.so');
const SITE = '/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages';
const numpyDistInfo = existsSync(SITE) ? readdirSync(SITE).find((n) => /^numpy-.*\.dist-info$/.test(n)) : undefined;
const HAS_NUMPY = existsSync(join(SITE, 'numpy')) && existsSync(join(SITE, 'numpy.libs')) && numpyDistInfo !== undefined;
const NO_NUMPY = `SKIPPED: pip numpy (numpy/, numpy.libs/, numpy-*.dist-info) not found in ${SITE}`;

const gcc = (args: string[], cwd: string) => execFileSync('gcc', args, { cwd, stdio: 'pipe' });

/**
 * libs/libdep.so, libs/libdep2.so -> libdep2.so.1 (a symlink: its soname is
 * libdep2.so), pkg/mod.so with DT_RUNPATH $ORIGIN/../libs, pkg/mod_rpath.so
 * with DT_RPATH, bin/app linked to libm, libdep and libdep2 with no rpath;
 * plus pip's numpy when this machine has it.
 */
function writeLoaderSource(src: string): void {
  const c = join(src, '.c');
  mkdirSync(c, { recursive: true });
  for (const d of ['libs', 'pkg', 'bin']) mkdirSync(join(src, d), { recursive: true });
  writeFileSync(join(c, 'dep.c'), 'int dep_value(void) { return 40; }\n');
  writeFileSync(join(c, 'dep2.c'), 'int dep2_value(void) { return 2; }\n');
  writeFileSync(join(c, 'mod.c'), 'int dep_value(void); int dep2_value(void);\nint mod_value(void) { return dep_value() + dep2_value(); }\n');
  writeFileSync(join(c, 'app.c'), '#include <math.h>\n#include <stdio.h>\nint dep_value(void); int dep2_value(void);\nint main(void) { printf("app %d %g\\n", dep_value() + dep2_value(), floor(2.5)); return 0; }\n');
  gcc(['-shared', '-fPIC', '-Wl,-soname,libdep.so', '-o', '../libs/libdep.so', 'dep.c'], c);
  gcc(['-shared', '-fPIC', '-Wl,-soname,libdep2.so', '-o', '../libs/libdep2.so.1', 'dep2.c'], c);
  symlinkSync('libdep2.so.1', join(src, 'libs', 'libdep2.so'));
  gcc(['-shared', '-fPIC', '-o', '../pkg/mod.so', 'mod.c', '-L../libs', '-ldep', '-ldep2', "-Wl,-rpath,$ORIGIN/../libs", '-Wl,--enable-new-dtags'], c);
  gcc(['-shared', '-fPIC', '-o', '../pkg/mod_rpath.so', 'mod.c', '-L../libs', '-ldep', '-ldep2', "-Wl,-rpath,$ORIGIN/../libs", '-Wl,--disable-new-dtags'], c);
  // libm first, RUNPATH to a directory nothing else uses: a miss in the farm directory before a hit there
  mkdirSync(join(src, 'libs3'));
  cpSync(join(src, 'libs', 'libdep.so'), join(src, 'libs3', 'libdep.so'));
  cpSync(join(src, 'libs', 'libdep2.so.1'), join(src, 'libs3', 'libdep2.so'));
  gcc(['-shared', '-fPIC', '-o', '../pkg/mod_m.so', 'mod.c', '-Wl,--no-as-needed', '-lm', '-L../libs', '-ldep', '-ldep2', "-Wl,-rpath,$ORIGIN/../libs3", '-Wl,--enable-new-dtags'], c);
  // libm first: the loader misses in <mnt>/libs before it hits there
  gcc(['-o', '../bin/app', 'app.c', '-Wl,--no-as-needed', '-lm', '-L../libs', '-ldep', '-ldep2'], c);
  // the program's own RUNPATH $ORIGIN/../libs (as build systems install relocatable tools)
  gcc(['-o', '../bin/app_origin', 'app.c', '-L../libs', '-ldep', '-ldep2', "-Wl,-rpath,$ORIGIN/../libs", '-Wl,--enable-new-dtags'], c);
  rmSync(c, { recursive: true });
  if (HAS_NUMPY) {
    const skipCache = (s: string) => !s.includes('__pycache__');
    for (const d of ['numpy', 'numpy.libs', numpyDistInfo!]) cpSync(join(SITE, d), join(src, d), { recursive: true, filter: skipCache });
  }
}

const w = shimWorld({ source: writeLoaderSource, homeName: 'home' });
const bin = tempDir('vrift-loader-bin-');

/** The mount's VDir name and link farm. */
const vdirName = () => vdirNameOf(w.home, w.mnt)!;
const farm = () => join(w.home, 'farm', vdirName());

/** What main did before the audit library: the shim alone (LD_PRELOAD, VRIFT_VDIRS), no LD_AUDIT. */
function shimOnly(script: string) {
  return w.plain(script, { env: { LD_PRELOAD: LIB, VRIFT_VDIRS: vdirName(), VRIFT_RUN_ID: `loader-${process.pid}`, LD_AUDIT: undefined } });
}

/** A C program that dlopen()s argv[1], calls mod_value() and prints the file the loader mapped it from. */
function dlopenProgram(): string {
  const out = join(bin, 'dlopen-call');
  if (!existsSync(out)) {
    const c = join(bin, 'dlopen-call.c');
    writeFileSync(
      c,
      [
        '#define _GNU_SOURCE',
        '#include <dlfcn.h>',
        '#include <stdio.h>',
        'int main(int argc, char **argv) {',
        '  void *h = dlopen(argv[1], RTLD_NOW);',
        '  if (!h) { printf("dlopen failed: %s\\n", dlerror()); return 1; }',
        '  int (*f)(void) = (int (*)(void))dlsym(h, "mod_value");',
        '  Dl_info info;',
        '  if (!f || !dladdr((void *)f, &info)) { printf("no mod_value\\n"); return 1; }',
        '  printf("mod_value %d from %s\\n", f(), info.dli_fname);',
        '  return 0;',
        '}',
      ].join('\n'),
    );
    execFileSync('gcc', ['-O2', '-o', out, c, '-ldl']);
  }
  return out;
}

describe('the dynamic loader in a mount (LD_AUDIT)', () => {
  it('the test libraries carry what they claim: RUNPATH, RPATH, no rpath on the program', () => {
    const dyn = (f: string) => execFileSync('readelf', ['-d', join(w.src, f)], { encoding: 'utf8' });
    expect(dyn('pkg/mod.so')).toMatch(/\(RUNPATH\)\s+Library runpath: \[\$ORIGIN\/\.\.\/libs\]/);
    expect(dyn('pkg/mod_rpath.so')).toMatch(/\(RPATH\)\s+Library rpath: \[\$ORIGIN\/\.\.\/libs\]/);
    expect(dyn('bin/app')).not.toMatch(/R(UN)?PATH/);
    expect(dyn('bin/app')).toMatch(/libm\.so\.6[\s\S]*libdep\.so[\s\S]*libdep2\.so/);
  });

  it('vrift run sets LD_AUDIT, and children keep it (env -u cannot drop it)', () => {
    const r = w.run(`echo "$LD_AUDIT"; env -u LD_AUDIT sh -c 'echo "$LD_AUDIT"'; LD_AUDIT=/nonexistent/x.so sh -c 'echo "$LD_AUDIT"' 2>/dev/null`);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').slice(0, 3)).toEqual([AUDIT, AUDIT, `${AUDIT}:/nonexistent/x.so`]);
  });

  it('LD_LIBRARY_PATH=<mnt>/libs <mnt>/bin/app: libraries from the mount (a miss there first, a symlinked one)', () => {
    const r = w.run(`LD_LIBRARY_PATH='${w.mnt}/libs' '${w.mnt}/bin/app'`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('app 42 2\n');
    // farm entries are named as the loader asked: libdep2.so (a virtual symlink to libdep2.so.1)
    expect(statSync(join(farm(), 'libs', 'libdep2.so')).isFile()).toBe(true);
    expect(existsSync(join(farm(), 'libs', 'libm.so.6'))).toBe(false);
  });

  it("a program's own $ORIGIN rpath: it runs from the link farm, so $ORIGIN/../libs and /proc/self/exe mirror the mount", () => {
    const r = w.run(`'${w.mnt}/bin/app_origin' && cd '${w.mnt}/bin' && ./app_origin && python3 -c 'import subprocess; print(subprocess.run(["./app_origin"], capture_output=True, text=True).stdout, end="")'`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('app 42 2\n'.repeat(3));
    expect(statSync(join(farm(), 'bin', 'app_origin')).isFile()).toBe(true);
    // built in the mount (an upper file) the same
    const b = w.run(`cd '${w.mnt}' && mkdir -p built && printf 'int dep_value(void); int dep2_value(void);\\nint main(void) { return dep_value() + dep2_value() == 42 ? 0 : 1; }\\n' > built/m.c && gcc -o built/m built/m.c -Llibs -ldep -ldep2 '-Wl,-rpath,$ORIGIN/../libs' && ./built/m && echo built-ok; rm -r built`);
    expect(b.stdout, b.stderr).toBe('built-ok\n');
  });

  it('without the audit library (main before) the program does not start', () => {
    const r = shimOnly(`LD_LIBRARY_PATH='${w.mnt}/libs' '${w.mnt}/bin/app'`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/libdep\.so: cannot open shared object file/);
  });

  for (const mod of ['mod.so', 'mod_rpath.so', 'mod_m.so']) {
    it(`a C program dlopen()s <mnt>/pkg/${mod}; its $ORIGIN rpath finds libs/ (mapped from the link farm)`, () => {
      const r = w.run(`'${dlopenProgram()}' '${w.mnt}/pkg/${mod}'`);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`mod_value 42 from ${join(farm(), 'pkg', mod)}\n`);
    });

    it(`python3 ctypes.CDLL('<mnt>/pkg/${mod}')`, () => {
      const r = w.run(`python3 -c 'import ctypes; print(ctypes.CDLL("${w.mnt}/pkg/${mod}").mod_value())'`);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('42\n');
    });
  }

  it('dlopen of a relative path from a virtual working directory', () => {
    const r = w.run(`cd '${w.mnt}/pkg' && '${dlopenProgram()}' ./mod.so`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`mod_value 42 from ${join(farm(), 'pkg', 'mod.so')}\n`);
  });

  it('without the audit library (main before) dlopen finds the module but not its $ORIGIN dependencies', () => {
    const r = shimOnly(`'${dlopenProgram()}' '${w.mnt}/pkg/mod.so'`);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/dlopen failed: libdep\.so: cannot open shared object file/);
  });

  it('the link farm: hard links to the CAS blobs, private directories, stale entries replaced', () => {
    expect(w.run(`'${dlopenProgram()}' '${w.mnt}/pkg/mod.so'`).code).toBe(0);
    const entry = join(farm(), 'libs', 'libdep.so');
    const st = statSync(entry);
    expect(st.nlink).toBeGreaterThanOrEqual(2); // the blob (or its .x twin) and the farm name
    expect(statSync(join(w.home, 'farm')).mode & 0o777).toBe(0o700);
    expect(statSync(farm()).mode & 0o777).toBe(0o700);
    const blobIno = st.ino;
    // a stale entry (another file under the name): the next lookup puts the blob back
    rmSync(entry);
    const stale = join(bin, 'stale');
    writeFileSync(stale, 'not a library');
    linkSync(stale, entry);
    expect(statSync(entry).ino).not.toBe(blobIno);
    const r = w.run(`'${dlopenProgram()}' '${w.mnt}/pkg/mod.so'`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^mod_value 42 /);
    expect(statSync(entry).ino).toBe(blobIno);
    expect(readdirSync(join(farm(), 'libs')).filter((n) => n.includes('.vrift-tmp.'))).toEqual([]);
  });

  it('programs that load nothing from a mount do not notice the audit library', () => {
    const r = w.run(`python3 -c 'import json, ctypes.util; print(json.dumps([1]))' && ls '${w.mnt}' | sort | tr '\\n' ' '`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\[1\]\nbin libs libs3 (.* )?pkg $/);
  });

  const numpyScript = () => `PYTHONPATH='${w.mnt}' PYTHONDONTWRITEBYTECODE=1 python3 -c 'import numpy; print(numpy.arange(5).sum())'`;

  it.skipIf(!HAS_NUMPY)(HAS_NUMPY ? 'pip numpy imports from a mount (numpy.libs through $ORIGIN/../../numpy.libs)' : `pip numpy imports from a mount — ${NO_NUMPY}`, () => {
    const r = w.run(numpyScript(), { timeoutMs: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('10\n');
    expect(readdirSync(join(farm(), 'numpy.libs')).some((n) => n.startsWith('libscipy_openblas'))).toBe(true);
  });

  it.skipIf(!HAS_NUMPY)(HAS_NUMPY ? 'without the audit library (main before) numpy does not import' : `numpy without the audit library — ${NO_NUMPY}`, () => {
    const r = shimOnly(numpyScript());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/libscipy_openblas.*cannot open shared object file/);
  });
});
