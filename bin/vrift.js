#!/usr/bin/env node
// The `vrift` command: a thin launcher for the compiled CLI. `vrift run`
// has its own lean entry (its start-up is on the path to its command).
if (process.argv[2] === 'run') await import('../dist/src/cli/run-main.js');
else if (process.argv[2] === '_ns-exec') await import('../dist/src/cli/ns-exec-main.js'); // the shim's way to run a static program (ns-exec.ts)
else await import('../dist/src/cli/main.js');
