#!/usr/bin/env node
// The `vrift` command: a thin launcher for the compiled CLI. `vrift run`
// has its own lean entry (its start-up is on the path to its command).
if (process.argv[2] === 'run') await import('../dist/src/cli/run-main.js');
else await import('../dist/src/cli/main.js');
