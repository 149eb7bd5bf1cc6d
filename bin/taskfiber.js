#!/usr/bin/env -S node --max-semi-space-size=16
// Node >= 22.18 runs the TypeScript sources directly (type stripping); `npm run
// build` emits dist/ for older runtimes. --max-semi-space-size=16 caps V8's young
// generation (README, "Memory"); `node bin/taskfiber.js` skips this line, so pass it.
import "../src/cli/main.ts"
