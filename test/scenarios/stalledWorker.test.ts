/**
 * A worker that stalls past its lease (an uninterruptible section, a blocked event
 * loop) while its own reaper reaps the task and its dispatcher claims it again.
 * Without fencing, attempt 2 runs beside attempt 1, attempt 1's settling deletes
 * attempt 2's entry (so its lease is not renewed and it is reaped while running, a
 * third run), and attempt 1's success is recorded while attempt 2 holds the task.
 * With a fencing token per claim, the stale run is stopped when the new claim
 * arrives, its every statement is refused, and only the current claim's outcome is
 * recorded.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PermanentError, TaskCancelled, TransientError } from "../../src/domain/Errors.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map(Option.getOrThrow))

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("a stalled worker", (it) => {
  it.effect("its stale run is refused everything; the new claim's run alone settles the task", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const started = [yield* Deferred.make<void>(), yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const release = [yield* Deferred.make<void>(), yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const runs = yield* Ref.make(0)
      const Stall = Job.define({
        name: "stall", queue: "stalled", payload: Schema.Struct({}),
        run: (_, ctx) =>
          Effect.gen(function*() {
            yield* Ref.update(runs, (n) => n + 1)
            const i = ctx.attempt - 1
            yield* Deferred.succeed(started[i]!, undefined)
            // The stall: nothing interrupts this section.
            yield* Effect.uninterruptible(Deferred.await(release[i]!))
            yield* ctx.progress({ from: ctx.attempt })
            return { attempt: ctx.attempt }
          })
      })
      const s = yield* Runtime.startSupervisor([Stall], { lease: Duration.seconds(3), reapInterval: Duration.millis(30) })
      const { id } = yield* Tasks.enqueue(Stall, {})
      yield* Deferred.await(started[0]!)
      // The lease runs out while the run is stuck (as when the event loop was
      // blocked for longer than the lease): this worker's own reaper reaps it, and
      // its dispatcher claims the task again.
      yield* sql`update taskfiber.tasks set lease_expires_at = clock_timestamp() - interval '1 second' where id = ${id}::uuid`
      yield* Deferred.await(started[1]!)
      // Attempt 1 ends after attempt 2 has started: its success, its progress, its
      // settling are all refused, and it leaves attempt 2's entry alone.
      yield* Deferred.succeed(release[0]!, undefined)
      const [first] = yield* Runtime.outcomesOf(s, 1)
      expect(first).toEqual({ taskId: id, outcome: "abandoned" })
      expect(yield* s.held).toEqual([id]) // attempt 2, still held here (its lease renewed)
      const during = yield* getTask(id)
      expect(during.task).toMatchObject({ status: "running", attempt: 2, result: null, progress: null })
      // Attempt 2's lease is renewed by the heartbeat: it is not reaped again.
      const [lease] = yield* sql<{ ok: boolean }>`
        select lease_expires_at > clock_timestamp() as ok from taskfiber.tasks where id = ${id}::uuid`
      expect(lease?.ok).toBe(true)
      yield* Deferred.succeed(release[1]!, undefined)
      const [second] = yield* Runtime.outcomesOf(s, 1)
      expect(second).toEqual({ taskId: id, outcome: "succeeded" })
      const done = yield* getTask(id)
      expect(done.task).toMatchObject({ status: "succeeded", attempt: 2, result: { attempt: 2 }, progress: { from: 2 } })
      expect(yield* Ref.get(runs)).toBe(2)
      expect(done.events.map((e) => [e.from, e.to, e.attempt])).toEqual([
        [null, "queued", 0], ["queued", "running", 1], ["running", "retrying", 1], ["retrying", "running", 2], ["running", "succeeded", 2]
      ])
    }).pipe(Effect.scoped))

  // Each way a run can end besides success, from a stale claim: refused.
  const staleEnd = (end: "fail" | "retry" | "cancel") =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const second = yield* Deferred.make<void>()
      const error = end === "fail"
        ? new PermanentError({ message: "stale failure" })
        : end === "retry"
        ? new TransientError({ message: "stale retry" })
        : new TaskCancelled({ taskId: "stale" })
      const Ends = Job.define({
        name: `stale-${end}`, queue: `stale-${end}`, payload: Schema.Struct({}),
        run: (_, ctx) =>
          ctx.attempt === 1
            ? Effect.andThen(
              Effect.andThen(Deferred.succeed(started, undefined), Effect.uninterruptible(Deferred.await(release))),
              Effect.fail(error)
            )
            : Effect.andThen(Deferred.succeed(second, undefined), Effect.never)
      })
      const s = yield* Runtime.startSupervisor([Ends], { lease: Duration.seconds(3), reapInterval: Duration.millis(30), shutdownGrace: Duration.millis(50) })
      const { id } = yield* Tasks.enqueue(Ends, {})
      yield* Deferred.await(started)
      yield* sql`update taskfiber.tasks set lease_expires_at = clock_timestamp() - interval '1 second' where id = ${id}::uuid`
      yield* Deferred.await(second)
      yield* Deferred.succeed(release, undefined)
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: id, outcome: "abandoned" })
      const t = yield* getTask(id)
      expect(t.task).toMatchObject({ status: "running", attempt: 2 })
      expect(t.events.map((e) => e.to)).toEqual(["queued", "running", "retrying", "running"])
    }).pipe(Effect.scoped)

  it.effect("a stale run's failure is refused", () => staleEnd("fail"))
  it.effect("a stale run's retry is refused", () => staleEnd("retry"))
  it.effect("a stale run that gives up (TaskCancelled) cannot cancel the new holder's run", () => staleEnd("cancel"))
})
