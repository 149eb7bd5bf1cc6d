#!/usr/bin/env -S node --max-semi-space-size=16 --heap-growing-percent=30
// The installed package runs the compiled dist/; a clone of the repository, which
// has src/ and no build, runs the TypeScript sources (Node >= 22.18 strips types).
// The flags bound V8's heap growth (docs/operations.md, "Memory"); `node
// bin/taskfiber.js` skips this line, so pass them.
import { existsSync } from "node:fs"

const source = new URL("../src/cli/main.ts", import.meta.url)
await import(existsSync(source) ? source.href : new URL("../dist/cli/main.js", import.meta.url).href)
