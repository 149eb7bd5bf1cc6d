#!/usr/bin/env -S node --max-semi-space-size=16 --heap-growing-percent=30
// Node >= 22.18 runs the TypeScript sources directly (type stripping); `npm run
// build` emits dist/ for older runtimes. The flags bound V8's heap growth (README,
// "Memory"); `node bin/taskfiber.js` skips this line, so pass them.
import "../src/cli/main.ts"
