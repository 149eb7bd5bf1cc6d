/**
 * The attempt limit of a task: its request's, else its job's, else the store's
 * `RETRY_MAX_ATTEMPTS` (read once, when the store's layer is built; here from a
 * ConfigProvider saying 3). The runner obeys the task's `max_attempts` alone.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option, Schema } from "effect"
import { TransientError } from "../../src/domain/Errors.ts"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as CancelBus from "../../src/coordination/CancelBus.ts"
import * as PgWakeups from "../../src/coordination/PgWakeups.ts"
import * as RuntimeEvents from "../../src/observability/RuntimeEvents.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as JobRegistry from "../../src/runtime/JobRegistry.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import * as Workers from "../../src/store/Workers.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const RetryMaxAttempts3 = ConfigProvider.layer(ConfigProvider.fromEnv({ env: { RETRY_MAX_ATTEMPTS: "3" } }))

const Env = Layer.mergeAll(PgTaskStore.layer.pipe(Layer.provide(RetryMaxAttempts3)), Workers.layer, CancelBus.layerLocal, PgWakeups.layer, RuntimeEvents.layer).pipe(
  Layer.provideMerge(TestDatabase.layer())
)

const Empty = Schema.Struct({})
const queue = "attempt-limit"
const NoPolicy = Job.define({
  name: "no-policy", queue, payload: Empty,
  run: () => Effect.fail(new TransientError({ message: "not yet" }))
})
const OwnPolicy = Job.define({
  name: "own-policy", queue, payload: Empty,
  retry: RetryPolicy.exponential({ maxAttempts: 5 }),
  run: () => Effect.void
})
const DefaultPolicy = Job.define({ name: "default-policy", queue, payload: Empty, retry: RetryPolicy.exponential(), run: () => Effect.void })
const OwnMaxAttempts = Job.define({ name: "own-max-attempts", queue, payload: Empty, maxAttempts: 4, run: () => Effect.void })

const maxAttemptsOf = (id: string) =>
  Effect.flatMap(TaskStore.TaskStore, (s) => s.get(id)).pipe(Effect.map((t) => Option.getOrThrow(t).task.maxAttempts))

describe("RETRY_MAX_ATTEMPTS", () => {
  const read = (env: Record<string, string>) => TaskStore.maxAttemptsConfig.parse(ConfigProvider.fromEnv({ env }))
  it.effect("defaults to the default policy's 25 runs and refuses a limit below 1", () =>
    Effect.gen(function*() {
      expect(yield* read({})).toBe(RetryPolicy.defaults.maxAttempts)
      expect(yield* read({ RETRY_MAX_ATTEMPTS: "3" })).toBe(3)
      for (const bad of ["0", "-1", "2.5", "many"]) expect((yield* Effect.flip(read({ RETRY_MAX_ATTEMPTS: bad })))._tag).toBe("ConfigError")
    }))
})

it.layer(Env, { timeout: 60_000, excludeTestServices: true })("attempt limit", (it) => {
  it.effect("a request that names none gets RETRY_MAX_ATTEMPTS; one that names its own keeps it", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const [plain, own, checked] = yield* s.enqueueMany([
        { type: "t", queue: "limits" },
        { type: "t", queue: "limits", maxAttempts: 7 },
        { type: "t", queue: "limits", delayMs: 0 } // past the hand-written check, through the decoder
      ])
      expect(yield* maxAttemptsOf(plain!.id)).toBe(3)
      expect(yield* maxAttemptsOf(own!.id)).toBe(7)
      expect(yield* maxAttemptsOf(checked!.id)).toBe(3)
    }))

  it.effect("a job with no retry policy and no maxAttempts gets RETRY_MAX_ATTEMPTS; any policy of its own, even the default one, keeps its limit", () =>
    Effect.gen(function*() {
      expect(NoPolicy.maxAttempts).toBeUndefined()
      expect(DefaultPolicy.maxAttempts).toBe(25)
      const limitOf = (job: Job.AnyJob, options?: Tasks.EnqueueOptions) =>
        Effect.flatMap(Tasks.enqueue(job, {}, { delayMs: 3_600_000, ...options }), (r) => maxAttemptsOf(r.id))
      expect(yield* limitOf(NoPolicy)).toBe(3)
      expect(yield* limitOf(OwnPolicy)).toBe(5)
      expect(yield* limitOf(DefaultPolicy)).toBe(25)
      expect(yield* limitOf(OwnMaxAttempts)).toBe(4)
      expect(yield* limitOf(NoPolicy, { maxAttempts: 2 })).toBe(2)
      const registry = JobRegistry.make([NoPolicy, OwnPolicy])
      const byName = yield* Tasks.enqueueByName(registry, "no-policy", {}, { delayMs: 3_600_000 })
      expect(yield* maxAttemptsOf(byName.id)).toBe(3)
    }))

  // The job's retries wait the default policy's delays (1 s, then 2 s, each up to
  // 30 % longer): about 3.5 s.
  it.effect("a task of a job with no policy fails after its third transient failure", () =>
    Effect.gen(function*() {
      const s = yield* Runtime.startSupervisor([NoPolicy])
      const { id } = yield* Tasks.enqueue(NoPolicy, {})
      const outcomes = yield* Runtime.outcomesOf(s, 3)
      expect(outcomes).toEqual([
        { taskId: id, outcome: "retrying" },
        { taskId: id, outcome: "retrying" },
        { taskId: id, outcome: "failed" }
      ])
      const { events, task } = Option.getOrThrow(yield* Effect.flatMap(TaskStore.TaskStore, (st) => st.get(id)))
      expect(task).toMatchObject({ status: "failed", attempt: 3, maxAttempts: 3 })
      expect(events.map((e) => e.to)).toEqual(["queued", "running", "retrying", "running", "retrying", "running", "failed"])
    }).pipe(Effect.scoped))
})

// The setting overridden in code beats the environment's.
it.layer(
  Taskfiber.layerWithoutDatabase({ jobs: [OwnMaxAttempts], config: { retryMaxAttempts: 2 } }).pipe(
    Layer.provide(RetryMaxAttempts3),
    Layer.provideMerge(TestDatabase.layer())
  ),
  { timeout: 60_000, excludeTestServices: true }
)("attempt limit under Taskfiber.layer", (it) => {
  it.effect("config.retryMaxAttempts is the store's attempt limit", () =>
    Effect.gen(function*() {
      const { id } = yield* Effect.flatMap(TaskStore.TaskStore, (s) => s.enqueue({ type: "t", queue: "limits", delayMs: 3_600_000 }))
      expect(yield* maxAttemptsOf(id)).toBe(2)
    }))
})
