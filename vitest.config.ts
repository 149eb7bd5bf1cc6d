import { defaultClientConditions, defaultServerConditions } from "vite"
import { defineConfig } from "vitest/config"

// `import … from "taskfiber"` (the examples, the README's code) resolves to src/, not dist/.
const source = "taskfiber-source"

export default defineConfig({
  resolve: { conditions: [source, ...defaultClientConditions] },
  ssr: { resolve: { conditions: [source, ...defaultServerConditions] } },
  test: {
    include: ["test/**/*.test.ts"],
    // Integration tests start PostgreSQL work; each file owns its own database,
    // so files run in parallel (2 cores: two forks are enough).
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ["test/support/globalSetup.ts"],
    // A passing test's console output (the runtime's log lines) is dropped; a
    // failing one's is printed with its failure.
    silent: "passed-only"
  }
})
