import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Integration tests start PostgreSQL work; each file owns its own database,
    // so files run in parallel (2 cores: two forks are enough).
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ["test/support/globalSetup.ts"]
  }
})
