/**
 * The runtime's settings from the environment: defaults, values read, and values
 * out of range refused with an error that names the variable.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect } from "effect"
import * as RuntimeConfig from "../../src/runtime/RuntimeConfig.ts"

const read = (env: Record<string, string>) => RuntimeConfig.config.parse(ConfigProvider.fromEnv({ env }))

describe("RuntimeConfig", () => {
  it.effect("an empty environment gives the defaults", () =>
    Effect.gen(function*() {
      expect(yield* read({})).toEqual(RuntimeConfig.defaults)
    }))

  it.effect("reads every setting", () =>
    Effect.gen(function*() {
      const c = yield* read({
        MAX_CONCURRENT_JOBS: "4", QUEUE_CONCURRENCY: " emails=2, reports = 1 ,", JOB_TIMEOUT: "5 seconds",
        RETRY_MAX_ATTEMPTS: "3", SHUTDOWN_GRACE: "0 millis", LEASE_DURATION: "1 minute", REAP_INTERVAL: "2 seconds",
        PROGRESS_INTERVAL: "250 millis", CLAIM_BATCH: "50", PREFETCH: "0"
      })
      expect(c.maxConcurrentJobs).toBe(4)
      expect([...c.queueConcurrency]).toEqual([["emails", 2], ["reports", 1]])
      expect(Duration.toMillis(c.jobTimeout)).toBe(5000)
      expect(c.retryMaxAttempts).toBe(3)
      expect(Duration.toMillis(c.shutdownGrace)).toBe(0)
      expect(Duration.toMillis(c.lease)).toBe(60_000)
      expect(Duration.toMillis(c.reapInterval)).toBe(2000)
      expect(Duration.toMillis(c.progressInterval)).toBe(250)
      expect(c.claimBatch).toBe(50)
      expect(c.prefetch).toBe(0)
    }))

  it.effect("a value out of range is a ConfigError naming its variable", () =>
    Effect.gen(function*() {
      const bad: ReadonlyArray<readonly [string, string]> = [
        ["MAX_CONCURRENT_JOBS", "0"], ["CLAIM_BATCH", "0"], ["PREFETCH", "-1"], ["MAX_CONCURRENT_JOBS", "many"],
        ["QUEUE_CONCURRENCY", "emails"], ["QUEUE_CONCURRENCY", "emails=0"], ["QUEUE_CONCURRENCY", "a=1,b=x"],
        ["LEASE_DURATION", "0 millis"], ["JOB_TIMEOUT", "soon"], ["REAP_INTERVAL", "0 seconds"],
        ["PROGRESS_INTERVAL", "0 millis"]
      ]
      for (const [name, value] of bad) {
        const error = yield* Effect.flip(read({ [name]: value }))
        expect(error._tag).toBe("ConfigError")
        expect(String(error)).toContain(name)
      }
    }))
})
