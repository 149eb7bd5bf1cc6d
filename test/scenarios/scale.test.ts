import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue, Ref, References, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Job from "../../src/runtime/Job.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const Noop = Job.define({ name: "noop", queue: "scale", payload: Schema.Struct({}), run: () => Effect.void })
const total = Number(process.env.SCALE_TASKS ?? 10_000)

it.layer(Runtime.storeOnly, { timeout: 240_000, excludeTestServices: true })("scale", (it) => {
  it.effect("10,000 no-op tasks with two supervisors on one database: all succeed, each run exactly once", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const sql = yield* SqlClient
      for (let i = 0; i < total; i += 1000) {
        yield* store.enqueueMany(Array.from({ length: Math.min(1000, total - i) }, () => ({ type: "noop", queue: "scale" })))
      }
      const done = yield* Ref.make(0)
      const all = yield* Deferred.make<void>()
      const supervisors = yield* Effect.all([
        Runtime.startSupervisor([Noop], { maxConcurrentJobs: 20 }),
        Runtime.startSupervisor([Noop], { maxConcurrentJobs: 20 })
      ])
      for (const s of supervisors) {
        const outcomes = yield* s.outcomes
        yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
          const o = yield* Queue.take(outcomes)
          if (o.outcome !== "succeeded") yield* Deferred.die(all, new Error(`task ${o.taskId}: ${o.outcome}`))
          if ((yield* Ref.updateAndGet(done, (n) => n + 1)) === total) yield* Deferred.succeed(all, undefined)
        })))
      }
      yield* Deferred.await(all)
      const [row] = yield* sql<{ succeeded: number; once: number; runs: number; workers: number }>`
        select count(*) filter (where status = 'succeeded')::int as succeeded,
               count(*) filter (where attempt = 1)::int as once,
               (select count(*)::int from taskfiber.task_events where to_status = 'running') as runs,
               (select count(distinct worker_id)::int from taskfiber.task_events where to_status = 'running') as workers
        from taskfiber.tasks where queue = 'scale'`
      expect(row).toEqual({ succeeded: total, once: total, runs: total, workers: 2 })
    }).pipe(Effect.scoped, Effect.provideService(References.MinimumLogLevel, "Warn")), 240_000)
})
