#!/usr/bin/env node
// Node >= 22.18 runs the TypeScript sources directly (type stripping); `npm run
// build` emits dist/ for older runtimes.
import "../src/cli/main.ts"
