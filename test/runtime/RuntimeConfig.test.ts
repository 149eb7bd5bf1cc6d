/**
 * The runtime's settings from the environment: defaults, values read, and values
 * out of range refused with an error that names the variable; a per-queue limit
 * for a queue no job runs in refused by `Taskfiber.layer`.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Exit, Layer, Schema } from "effect"
import * as Job from "../../src/runtime/Job.ts"
import * as RuntimeConfig from "../../src/runtime/RuntimeConfig.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"

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

describe("QUEUE_CONCURRENCY against the jobs' queues", () => {
  const Email = Job.define({ name: "email", queue: "emails", otherQueues: ["emails-bulk"], payload: Schema.Struct({}), run: () => Effect.void })
  const Echo = Job.define({ name: "echo", payload: Schema.Struct({}), run: () => Effect.void })
  // Nothing listens on port 1: had the layer opened the database first, the error
  // would be a connection's, not the setting's.
  const env = (extra: Record<string, string>) =>
    ConfigProvider.layer(ConfigProvider.fromEnv({ env: { DATABASE_URL: "postgres://u@127.0.0.1:1/x", ...extra } }))
  const build = (options: Taskfiber.TaskfiberOptions, extra: Record<string, string> = {}) =>
    Effect.flip(Effect.scoped(Layer.build(Taskfiber.layer(options)))).pipe(Effect.provide(env(extra)))

  it.effect("limits on the jobs' queues pass", () =>
    Effect.gen(function*() {
      const limits = new Map([["emails", 2], ["emails-bulk", 1], ["default", 3]])
      const exit = yield* Effect.exit(RuntimeConfig.checkQueueConcurrency(limits, ["default", "emails", "emails-bulk"], "options"))
      expect(Exit.isSuccess(exit)).toBe(true)
    }))

  it.effect("Taskfiber.layer refuses QUEUE_CONCURRENCY naming a queue no job runs in, quoting the variable as set, before the database", () =>
    Effect.gen(function*() {
      const error = yield* build({ jobs: [Echo, Email] }, { QUEUE_CONCURRENCY: " emails=2, nosuchqueue=1" })
      expect(error).toBeInstanceOf(RuntimeConfig.InvalidSetting)
      expect(error).toMatchObject({ _tag: "InvalidSetting", setting: "QUEUE_CONCURRENCY", value: " emails=2, nosuchqueue=1" })
      expect(error.message).toBe(
        `invalid setting QUEUE_CONCURRENCY=" emails=2, nosuchqueue=1": no job runs in queue "nosuchqueue" (queues: default, emails, emails-bulk)`
      )
    }))

  it.effect("options.config.queueConcurrency is checked the same way, and named as the option", () =>
    Effect.gen(function*() {
      const error = yield* build({ jobs: [Echo], config: { queueConcurrency: new Map([["default", 1], ["emails", 2]]) } }, { QUEUE_CONCURRENCY: "default=4" })
      expect(error.message).toBe(`invalid setting config.queueConcurrency="default=1,emails=2": no job runs in queue "emails" (queues: default)`)
    }))
})
