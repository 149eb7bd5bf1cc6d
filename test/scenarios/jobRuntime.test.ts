/**
 * The job runtime on a real PostgreSQL: order, ageing, retries, dead letters,
 * timeouts, cancellation, graceful shutdown and throttled progress.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PermanentError, TransientError } from "../../src/domain/Errors.ts"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const Empty = Schema.Struct({})
const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map(Option.getOrThrow))

it.layer(Runtime.storeOnly, { timeout: 120_000, excludeTestServices: true })("job runtime", (it) => {
  it.effect("runs due tasks by priority (one slot), then run_at", () =>
    Effect.gen(function*() {
      const order = yield* Ref.make<Array<number>>([])
      const Record = Job.define({
        name: "record", queue: "order", payload: Schema.Struct({ n: Schema.Int }),
        run: (p) => Ref.update(order, (xs) => [...xs, p.n])
      })
      // Enqueued before any supervisor runs, so all are due together.
      for (const [n, priority] of [[1, 0], [2, 5], [3, 0], [4, 9], [5, 5]] as const) {
        yield* Tasks.enqueue(Record, { n }, { priority })
      }
      const s = yield* Runtime.startSupervisor([Record], { maxConcurrentJobs: 1 })
      yield* Runtime.outcomesOf(s, 5)
      expect(yield* Ref.get(order)).toEqual([4, 2, 5, 1, 3])
    }).pipe(Effect.scoped))

  it.effect("a delayed task starts when due, woken by the timer at its run_at (no notification then)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const Later = Job.define({ name: "later", queue: "delayed", payload: Empty, run: () => Effect.void })
      const s = yield* Runtime.startSupervisor([Later])
      const { id } = yield* Tasks.enqueue(Later, {}, { delayMs: 400 })
      yield* Runtime.outcomesOf(s, 1)
      const [row] = yield* sql<{ waited: number }>`
        select extract(epoch from started_at - created_at)::float8 * 1000 as waited
        from taskfiber.tasks where id = ${id}::uuid`
      expect(row!.waited).toBeGreaterThanOrEqual(395)
      expect(row!.waited).toBeLessThan(5_000) // the timer, not the 30 s re-check
    }).pipe(Effect.scoped))

  it.effect("ageing lets a long-waiting low-priority task through a flood of high priority", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const order = yield* Ref.make<Array<string>>([])
      const Work = Job.define({
        name: "work", queue: "ageing", payload: Schema.Struct({ tag: Schema.String }),
        run: (p) => Ref.update(order, (xs) => [...xs, p.tag])
      })
      for (let i = 0; i < 30; i++) yield* Tasks.enqueue(Work, { tag: "high" }, { priority: 100 })
      const low = yield* Tasks.enqueue(Work, { tag: "low" }, { priority: 0 })
      // It has waited 3 hours: +180 at the default +1 a minute, past the flood's 100.
      yield* sql`update taskfiber.tasks set run_at = now() - interval '3 hours' where id = ${low.id}::uuid`
      const s = yield* Runtime.startSupervisor([Work], { maxConcurrentJobs: 1 })
      // More high-priority work keeps arriving while the runtime drains.
      yield* Effect.forkScoped(Effect.forEach(Array.from({ length: 30 }), () => Tasks.enqueue(Work, { tag: "high" }, { priority: 100 })))
      yield* Runtime.outcomesOf(s, 61)
      const ran = yield* Ref.get(order)
      expect(ran.indexOf("low")).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("retries store run_at by the policy; a permanent error dead-letters on the first attempt", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const policy = RetryPolicy.exponential({ baseMs: 150, factor: 2, maxDelayMs: 10_000, maxAttempts: 5, jitter: 0.3 })
      const seenRunAt = yield* Ref.make<Array<Date>>([])
      const Flaky = Job.define({
        name: "flaky", queue: "retries", payload: Empty, retry: policy,
        run: (_, ctx) => Effect.gen(function*() {
          const [row] = yield* sql<{ run_at: Date }>`select run_at from taskfiber.tasks where id = ${ctx.taskId}::uuid`
          yield* Ref.update(seenRunAt, (xs) => [...xs, row!.run_at])
          if (ctx.attempt <= 3) return yield* new TransientError({ message: `no luck ${ctx.attempt}` })
          return "ok"
        }).pipe(Effect.orDie)
      })
      const Broken = Job.define({
        name: "broken", queue: "retries", payload: Empty,
        run: () => Effect.fail(new PermanentError({ message: "card declined" }))
      })
      const s = yield* Runtime.startSupervisor([Flaky, Broken])
      const flaky = yield* Tasks.enqueue(Flaky, {})
      const broken = yield* Tasks.enqueue(Broken, {})
      const outcomes = yield* Runtime.outcomesOf(s, 5)
      expect(outcomes.filter((o) => o.taskId === broken.id)).toEqual([{ taskId: broken.id, outcome: "failed" }])
      const b = yield* getTask(broken.id)
      expect(b.task).toMatchObject({ status: "failed", attempt: 1, lastError: { tag: "PermanentError", classification: "permanent" } })
      const [dl] = yield* sql<{ reason: string }>`select reason from taskfiber.dead_letters where task_id = ${broken.id}::uuid`
      expect(dl?.reason).toBe("card declined")

      const f = yield* getTask(flaky.id)
      expect(f.task).toMatchObject({ status: "succeeded", attempt: 4, result: "ok" })
      // The delay stored after failed run n is within [base·2ⁿ⁻¹, base·2ⁿ⁻¹·1.3].
      const retries = f.events.filter((e) => e.to === "retrying")
      const runAts = (yield* Ref.get(seenRunAt)).slice(1)
      expect(retries).toHaveLength(3)
      retries.forEach((event, i) => {
        const delay = runAts[i]!.getTime() - event.at.getTime()
        const floor = 150 * 2 ** i
        expect(delay).toBeGreaterThanOrEqual(floor - 1)
        expect(delay).toBeLessThanOrEqual(floor * 1.3 + 1)
      })
    }).pipe(Effect.scoped))

  it.effect("a timeout is transient: the task is retried", () =>
    Effect.gen(function*() {
      const Slow = Job.define({
        name: "slow", queue: "timeouts", payload: Empty, timeout: "100 millis",
        retry: RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 1, maxAttempts: 2 }),
        run: (_, ctx) => (ctx.attempt === 1 ? Effect.sleep("1 minute") : Effect.succeed("fast now"))
      })
      const s = yield* Runtime.startSupervisor([Slow])
      const { id } = yield* Tasks.enqueue(Slow, {})
      const outcomes = yield* Runtime.outcomesOf(s, 2)
      expect(outcomes.map((o) => o.outcome)).toEqual(["retrying", "succeeded"])
      const t = yield* getTask(id)
      expect(t.events.find((e) => e.to === "retrying")?.error).toMatchObject({ tag: "TaskTimeout", classification: "timeout" })
    }).pipe(Effect.scoped))

  it.effect("a job that sets no timeout gets JOB_TIMEOUT's", () =>
    Effect.gen(function*() {
      const Unbounded = Job.define({
        name: "no-own-timeout", queue: "timeouts-default", payload: Empty,
        retry: RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 1, maxAttempts: 1 }),
        run: () => Effect.never
      })
      const s = yield* Runtime.startSupervisor([Unbounded], { jobTimeout: Duration.millis(100) })
      const { id } = yield* Tasks.enqueue(Unbounded, {})
      expect((yield* Runtime.outcomesOf(s, 1)).map((o) => o.outcome)).toEqual(["failed"])
      expect((yield* getTask(id)).task.lastError).toMatchObject({ tag: "TaskTimeout", classification: "timeout" })
    }).pipe(Effect.scoped))

  it.effect("cancelling a running task interrupts its fiber within 100 ms and its finalizers run", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const finalized = yield* Deferred.make<number>()
      const Forever = Job.define({
        name: "forever", queue: "cancel", payload: Empty,
        run: () => Deferred.succeed(started, undefined).pipe(
          Effect.andThen(Effect.never),
          Effect.onInterrupt(() => Effect.flatMap(Effect.sync(() => performance.now()), (t) => Deferred.succeed(finalized, t)))
        )
      })
      const s = yield* Runtime.startSupervisor([Forever])
      const { id } = yield* Tasks.enqueue(Forever, {})
      yield* Deferred.await(started)
      const before = performance.now()
      expect(yield* s.cancel(id, "user asked")).toBe(true)
      const at = yield* Deferred.await(finalized)
      expect(at - before).toBeLessThan(100)
      const [outcome] = yield* Runtime.outcomesOf(s, 1)
      expect(outcome?.outcome).toBe("cancelled")
      expect((yield* getTask(id)).task).toMatchObject({ status: "cancelled", lastError: { message: "user asked" } })
    }).pipe(Effect.scoped))

  it.effect("graceful shutdown returns in-flight tasks to queued, attempt given back, checkpoint kept", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const Long = Job.define({
        name: "long", queue: "shutdown", payload: Empty,
        run: (_, ctx) => ctx.saveCheckpoint({ page: 7 }).pipe(
          Effect.andThen(Deferred.succeed(started, undefined)),
          Effect.andThen(Effect.never)
        )
      })
      const { id } = yield* Tasks.enqueue(Long, {})
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Runtime.startSupervisor([Long], { shutdownGrace: Duration.millis(200) })
        yield* Deferred.await(started)
      })) // the scope closes: graceful shutdown
      const t = yield* getTask(id)
      expect(t.task).toMatchObject({ status: "queued", attempt: 0, checkpoint: { page: 7 }, leaseExpiresAt: null })
      expect(t.events.map((e) => e.to)).toEqual(["queued", "running", "queued"])
    }))

  it.effect("progress writes are throttled: 10,000 reports, a handful of writes, the last value kept", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`create table progress_writes (at timestamptz default clock_timestamp())`
      yield* sql`create function count_progress() returns trigger language plpgsql as $$
        begin insert into progress_writes default values; return new; end $$`
      yield* sql`create trigger count_progress after update of progress on taskfiber.tasks
        for each row when (old.progress is distinct from new.progress) execute function count_progress()`
      const elapsed = yield* Ref.make(0)
      const Chatty = Job.define({
        name: "chatty", queue: "progress", payload: Empty,
        run: (_, ctx) => Effect.gen(function*() {
          const t0 = performance.now()
          yield* Effect.forEach(Array.from({ length: 10_000 }, (_, i) => i + 1), (i) =>
            ctx.progress({ done: i }).pipe(Effect.andThen(i % 500 === 0 ? Effect.sleep("25 millis") : Effect.void)), { discard: true })
          yield* Ref.set(elapsed, performance.now() - t0)
        })
      })
      const s = yield* Runtime.startSupervisor([Chatty], { progressInterval: Duration.millis(100) })
      const { id } = yield* Tasks.enqueue(Chatty, {})
      yield* Runtime.outcomesOf(s, 1)
      const [writes] = yield* sql<{ n: number }>`select count(*)::int as n from progress_writes`
      // At most one write per 100 ms while reporting (~0.5 s, longer on a loaded
      // machine), plus the final flush: never anywhere near one write per report.
      const ms = yield* Ref.get(elapsed)
      expect(writes!.n).toBeGreaterThanOrEqual(2)
      expect(writes!.n).toBeLessThanOrEqual(Math.ceil(ms / 100) + 2)
      expect(writes!.n).toBeLessThan(100)
      expect((yield* getTask(id)).task.progress).toEqual({ done: 10_000 })
    }).pipe(Effect.scoped))
})
