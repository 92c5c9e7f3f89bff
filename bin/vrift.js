#!/usr/bin/env node
// The `vrift` command: a thin launcher for the compiled CLI.
import '../dist/src/cli/main.js';
