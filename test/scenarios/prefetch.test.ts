/**
 * The high-throughput path on a real PostgreSQL: the local prefetch buffer
 * (PREFETCH) and batched completion. What a crash or a shutdown leaves behind is
 * the same as without them: nothing lost, attempts given back for tasks that never
 * started, every reported success durable.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Transaction from "../../src/store/Transaction.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map(Option.getOrThrow))

it.layer(Runtime.storeOnly, { timeout: 120_000, excludeTestServices: true })("prefetch and batched completion", (it) => {
  it.effect("prefetched tasks wait for a slot; at shutdown the unstarted ones go back to queued, attempt given back", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const Block = Job.define({
        name: "block", queue: "prefetch-shutdown", payload: Schema.Struct({}),
        run: () => Deferred.succeed(started, undefined).pipe(Effect.andThen(Effect.never))
      })
      const ids: Array<string> = []
      for (let i = 0; i < 8; i++) ids.push((yield* Tasks.enqueue(Block, {})).id)
      yield* Effect.scoped(Effect.gen(function*() {
        const s = yield* Runtime.startSupervisor([Block], { maxConcurrentJobs: 1, prefetch: 20, shutdownGrace: Duration.millis(100) })
        yield* Deferred.await(started)
        // One handler runs; the other seven are claimed and held here, not started.
        expect((yield* s.held).length).toBe(8)
        const sql = yield* SqlClient
        const [row] = yield* sql<{ n: number }>`
          select count(*)::int as n from taskfiber.tasks where queue = 'prefetch-shutdown' and status = 'running'`
        expect(row?.n).toBe(8)
      })) // graceful shutdown
      for (const id of ids) {
        const t = yield* getTask(id)
        expect(t.task).toMatchObject({ status: "queued", attempt: 0, leaseExpiresAt: null })
        expect(t.events.map((e) => e.to)).toEqual(["queued", "running", "queued"])
      }
    }))

  it.effect("cancelling a prefetched task drops it from the buffer: it never runs", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const ran = yield* Ref.make<Array<number>>([])
      const Gate = Job.define({
        name: "gate", queue: "prefetch-cancel", payload: Schema.Struct({ n: Schema.Int }),
        run: (p) => Ref.update(ran, (xs) => [...xs, p.n]).pipe(
          Effect.andThen(p.n === 0 ? Deferred.succeed(started, undefined).pipe(Effect.andThen(Deferred.await(release))) : Effect.void)
        )
      })
      const first = yield* Tasks.enqueue(Gate, { n: 0 }, { priority: 10 })
      const second = yield* Tasks.enqueue(Gate, { n: 1 })
      const third = yield* Tasks.enqueue(Gate, { n: 2 })
      const s = yield* Runtime.startSupervisor([Gate], { maxConcurrentJobs: 1, prefetch: 10 })
      yield* Deferred.await(started)
      expect(yield* s.held).toHaveLength(3)
      expect(yield* s.cancel(second.id, "not needed")).toBe(true)
      yield* Deferred.succeed(release, undefined)
      const outcomes = yield* Runtime.outcomesOf(s, 2)
      expect(outcomes.map((o) => o.taskId).sort()).toEqual([first.id, third.id].sort())
      expect(yield* Ref.get(ran)).toEqual([0, 2])
      expect((yield* getTask(second.id)).task).toMatchObject({ status: "cancelled", attempt: 1 })
    }).pipe(Effect.scoped))

  it.effect("every success reported is already committed, with fewer completion statements than tasks", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const Noop = Job.define({ name: "noop", queue: "batched", payload: Schema.Struct({}), run: () => Effect.void })
      const store = yield* TaskStore
      const total = 2000
      yield* store.enqueueMany(Array.from({ length: total }, () => ({ type: "noop", queue: "batched" })))
      const s = yield* Runtime.startSupervisor([Noop], { maxConcurrentJobs: 10, prefetch: 200, claimBatch: 100 })
      let checked = 0
      for (const o of yield* Runtime.outcomesOf(s, total)) {
        expect(o.outcome).toBe("succeeded")
        // Spot-check durability as outcomes arrive: the row says succeeded already.
        if (checked++ % 100 === 0) expect((yield* getTask(o.taskId)).task.status).toBe("succeeded")
      }
      // Rows written by one statement share its transaction id (xmin): far fewer
      // distinct ones than tasks show that completions were batched.
      const [row] = yield* sql<{ succeeded: number; batches: number }>`
        select count(*)::int as succeeded, count(distinct xmin::text)::int as batches
        from taskfiber.tasks where queue = 'batched' and status = 'succeeded'`
      expect(row?.succeeded).toBe(total)
      expect(row?.batches).toBeLessThan(total / 2)
    }).pipe(Effect.scoped))

  it.effect("only the supervisor's claims commit asynchronously; a claim inside a caller's transaction leaves its commit synchronous", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* TaskStore
      yield* store.enqueueMany([{ type: "t", queue: "async-commit" }, { type: "t", queue: "async-commit" }])
      const setting = Effect.map(sql<{ synchronous_commit: string }>`show synchronous_commit`, (rows) => rows[0]?.synchronous_commit)
      const inside = (asyncCommit: boolean) =>
        Transaction.transaction(Effect.gen(function*() {
          const claimed = yield* store.claim({ workerId: "w-async", queues: ["async-commit"], limit: 1, leaseMs: 5000, asyncCommit })
          expect(claimed).toHaveLength(1)
          return yield* setting
        }))
      expect(yield* inside(false)).toBe("on")
      expect(yield* inside(true)).toBe("off")
      // SET LOCAL semantics: nothing leaks past the transaction.
      expect(yield* setting).toBe("on")
    }))

  it.effect("a completion batch that fails leaves its tasks leased: reported abandoned, reaped after the lease, run again", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const runs = yield* Ref.make(0)
      const Count = Job.define({ name: "count", queue: "completion-fails", payload: Schema.Struct({}), run: () => Ref.update(runs, (n) => n + 1) })
      yield* sql`alter function taskfiber.complete_tasks(text, jsonb) rename to complete_tasks_broken`
      const s = yield* Runtime.startSupervisor([Count], { lease: Duration.seconds(1), reapInterval: Duration.millis(100) })
      const { id } = yield* Tasks.enqueue(Count, {})
      const [first] = yield* Runtime.outcomesOf(s, 1)
      expect(first).toEqual({ taskId: id, outcome: "abandoned" })
      // Nothing was written: the task is still running under this worker's lease.
      expect((yield* getTask(id)).task).toMatchObject({ status: "running", attempt: 1 })
      yield* sql`alter function taskfiber.complete_tasks_broken(text, jsonb) rename to complete_tasks`
      // The heartbeat renews only the tasks the supervisor still runs, so the lease
      // of the given-up run expires (1 s) and the reaper retries it.
      const [second] = yield* Runtime.outcomesOf(s, 1)
      expect(second).toEqual({ taskId: id, outcome: "succeeded" })
      expect(yield* Ref.get(runs)).toBe(2)
      const t = yield* getTask(id)
      expect(t.task).toMatchObject({ status: "succeeded", attempt: 2 })
      expect(t.events.map((e) => e.to)).toEqual(["queued", "running", "retrying", "running", "succeeded"])
    }).pipe(Effect.scoped))

  // The completion statement completes only tasks the worker still holds; one that
  // was cancelled (or reaped) between the handler's start and its completion is not
  // reported as a success.
  it.effect("a success whose task was cancelled meanwhile is reported abandoned, and the task stays cancelled", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const Lost = Job.define({
        name: "lost", queue: "lost", payload: Schema.Struct({}),
        // Cancelled in the database alone, as by another instance whose bus message
        // has not arrived: the handler returns a success all the same.
        run: (_, ctx) => Effect.asVoid(Effect.orDie(store.cancel([ctx.taskId], "cancelled elsewhere")))
      })
      const { id } = yield* Tasks.enqueue(Lost, {})
      const s = yield* Runtime.startSupervisor([Lost], { prefetch: 10, claimBatch: 10 })
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: id, outcome: "abandoned" })
      expect((yield* getTask(id)).task.status).toBe("cancelled")
    }).pipe(Effect.scoped))

  // A limited queue's claim must be reckoned after the claims ahead of it in the
  // same round: reckoned before, with PREFETCH, the first claim's buffer takes the
  // free slots, and the limited queue's task waits in the buffer behind it, leased
  // and counted as running, though its queue never prefetches.
  it.effect("with PREFETCH, a queue with a QUEUE_CONCURRENCY limit is claimed only for slots its tasks take at once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const gate = yield* Deferred.make<void>()
      const limitedStarts = yield* Ref.make(0)
      const Free = Job.define({ name: "pf-free", queue: "pf-free", payload: Schema.Struct({}), run: () => Deferred.await(gate) })
      const Limited = Job.define({
        name: "pf-limited", queue: "pf-limited", payload: Schema.Struct({}),
        run: () => Effect.andThen(Ref.update(limitedStarts, (n) => n + 1), Deferred.await(gate))
      })
      for (let i = 0; i < 20; i++) yield* Tasks.enqueue(Free, {})
      for (let i = 0; i < 3; i++) yield* Tasks.enqueue(Limited, {})
      const s = yield* Runtime.startSupervisor([Free, Limited], {
        maxConcurrentJobs: 2, prefetch: 100, claimBatch: 100, queueConcurrency: new Map([["pf-limited", 1]])
      })
      // Up: its first claims are done. Every limited task that is running in the
      // database has its handler running here.
      const [held] = yield* sql<{ n: number }>`
        select count(*)::int as n from taskfiber.tasks where queue = 'pf-limited' and status = 'running'`
      expect(held?.n).toBe(yield* Ref.get(limitedStarts))
      yield* Deferred.succeed(gate, undefined)
      const outcomes = yield* Runtime.outcomesOf(s, 23)
      expect(outcomes.every((o) => o.outcome === "succeeded")).toBe(true)
      expect(yield* Ref.get(limitedStarts)).toBe(3)
    }).pipe(Effect.scoped))

  // A prefetched task's start is recorded by the heartbeat after it
  // starts, and that of a task handed back unstarted before is recorded before its
  // handler runs (so that a task that crashes its worker at once uses attempts).
  it.effect("the start of a prefetched task is recorded: by the heartbeat, or before its handler when it was handed back once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* TaskStore
      const gate = yield* Deferred.make<void>()
      const lastGate = yield* Deferred.make<void>()
      const renewed = yield* Deferred.make<void>()
      const seenInRun = new Map<number, boolean>()
      const startedOf = (id: string) =>
        Effect.map(sql<{ s: boolean }>`select handler_started as s from taskfiber.tasks where id = ${id}::uuid`, (r) => r[0]?.s)
      const Step = Job.define({
        name: "pf-start", queue: "pf-start", payload: Schema.Struct({ n: Schema.Int }),
        run: (p, ctx) =>
          Effect.gen(function*() {
            seenInRun.set(p.n, (yield* Effect.orDie(startedOf(ctx.taskId))) === true)
            if (p.n === 0) yield* Deferred.await(gate)
            if (p.n === 2) yield* Deferred.await(lastGate)
          })
      })
      const first = yield* Tasks.enqueue(Step, { n: 0 }, { priority: 3 })
      const flagged = yield* Tasks.enqueue(Step, { n: 1 }, { priority: 2 })
      const plain = yield* Tasks.enqueue(Step, { n: 2 }, { priority: 1 })
      // As if a crashed worker had held it in its buffer once.
      yield* sql`update taskfiber.tasks set returned_unstarted = 1 where id = ${flagged.id}::uuid`
      // Told when a heartbeat renewed the plain task after its handler began.
      const observed = TaskStore.of({
        ...store,
        extendLeases: (w, l, claims) =>
          Effect.tap(store.extendLeases(w, l, claims), () =>
            claims.some((c) => c.id === plain.id && c.started === true) ? Deferred.succeed(renewed, undefined) : Effect.void)
      })
      const s = yield* Runtime.startSupervisor([Step], { maxConcurrentJobs: 1, prefetch: 10, lease: Duration.millis(600) }).pipe(
        Effect.provideService(TaskStore, observed)
      )
      // The first runs (its start recorded by the claim); the other two wait in the buffer, unrecorded.
      expect(yield* startedOf(flagged.id)).toBe(false)
      expect(yield* startedOf(plain.id)).toBe(false)
      yield* Deferred.succeed(gate, undefined)
      yield* Runtime.outcomesOf(s, 2)
      // The flagged task's start was recorded before its handler ran; the plain one's
      // by the heartbeat, while it ran.
      expect(seenInRun.get(0)).toBe(true)
      expect(seenInRun.get(1)).toBe(true)
      yield* Deferred.await(renewed)
      expect(yield* startedOf(plain.id)).toBe(true)
      yield* Deferred.succeed(lastGate, undefined)
      yield* Runtime.outcomesOf(s, 1)
      expect(seenInRun.get(2)).toBe(false)
      for (const id of [first.id, flagged.id, plain.id]) expect((yield* getTask(id)).task.status).toBe("succeeded")
    }).pipe(Effect.scoped))
})
