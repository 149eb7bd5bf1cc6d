/**
 * Cancellation against the runtime's own timing: a cancel that arrives while the
 * claim that took the task is still on its way back, a cancel written by another
 * instance, and a cancel followed by the loss of the lease. Each run ends reported
 * as what happened to its task: cancelled.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Queue, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as CancelBus from "../../src/coordination/CancelBus.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map((t) => Option.getOrThrow(t).task))

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("cancellation races", (it) => {
  // A cancel the supervisor hears before its claim's answer arrives finds no task
  // to stop: unless remembered, the handler would run until the next heartbeat.
  it.effect("a cancel that lands between a claim's commit and the supervisor holding the task: the handler never runs", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const bus = yield* CancelBus.CancelBus
      const started = yield* Ref.make(0)
      const Target = Job.define({
        name: "cancel-race", queue: "cancel-race", payload: Schema.Struct({ target: Schema.Boolean }),
        run: (p) => p.target ? Effect.andThen(Ref.update(started, (n) => n + 1), Effect.never) : Effect.succeed("other")
      })
      const { id } = yield* Tasks.enqueue(Target, { target: true })
      // The bus tells the test when the supervisor's subscriber has taken a message
      // (and handled it: it does so before it next waits).
      const delivered = yield* Queue.unbounded<string>()
      const observedBus = CancelBus.CancelBus.of({
        publish: bus.publish,
        subscribe: Effect.map(bus.subscribe, (take) => Effect.tap(take, (taskId) => Queue.offer(delivered, taskId)))
      })
      // The real store; its claim, once committed, is followed by a cancellation of
      // the task (as by another request), heard by the supervisor before the claim's
      // rows reach it.
      let raced = false
      const racingStore = TaskStore.of({
        ...store,
        claimToRun: (o) =>
          Effect.tap(store.claimToRun(o), (tasks) =>
            raced || !tasks.some((t) => t.id === id) ? Effect.void : Effect.gen(function*() {
              raced = true
              const [row] = yield* store.cancel([id], "cancelled in the race")
              expect(row?.previousStatus).toBe("running")
              yield* bus.publish(id)
              while ((yield* Queue.take(delivered)) !== id) { /* another task's message */ }
            }))
      })
      const s = yield* Runtime.startSupervisor([Target]).pipe(
        Effect.provideService(TaskStore, racingStore),
        Effect.provideService(CancelBus.CancelBus, observedBus)
      )
      // A later task's outcome: by then the first claim's rows were handled.
      const other = yield* Tasks.enqueue(Target, { target: false })
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: other.id, outcome: "succeeded" })
      expect(raced).toBe(true)
      expect(yield* Ref.get(started)).toBe(0)
      expect(yield* s.held).toEqual([])
      expect(yield* getTask(id)).toMatchObject({ status: "cancelled", attempt: 1 })
    }).pipe(Effect.scoped))

  // Before, the heartbeat's "lease lost" was all the supervisor knew: the run was
  // reported abandoned.
  it.effect("a run cancelled by another instance (no bus message here) is reported cancelled", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const started = yield* Deferred.make<void>()
      const Long = Job.define({
        name: "cancelled-elsewhere", queue: "cancelled-elsewhere", payload: Schema.Struct({}),
        run: () => Effect.andThen(Deferred.succeed(started, undefined), Effect.never)
      })
      const s = yield* Runtime.startSupervisor([Long], { lease: Duration.millis(600) })
      const { id } = yield* Tasks.enqueue(Long, {})
      yield* Deferred.await(started)
      yield* store.cancel([id], "by another instance")
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: id, outcome: "cancelled" })
    }).pipe(Effect.scoped))

  // Before, the stop reason was overwritten: cancel, then the heartbeat's lease
  // loss, reported abandoned; cancel, then the shutdown, released a cancelled task.
  it.effect("a cancel followed by the loss of the lease, while the handler cannot stop, stays a cancellation", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const started = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const judged = yield* Deferred.make<void>()
      const Stubborn = Job.define({
        name: "stubborn", queue: "stubborn", payload: Schema.Struct({}),
        run: () => Effect.andThen(Deferred.succeed(started, undefined), Effect.uninterruptible(Deferred.await(gate)))
      })
      // The heartbeat asks why a claim lost its task only after finding it lost:
      // the test learns from that question that the heartbeat has judged the run.
      const observed = TaskStore.of({
        ...store,
        statuses: (ids) => Effect.tap(store.statuses(ids), () => Deferred.succeed(judged, undefined))
      })
      const s = yield* Runtime.startSupervisor([Stubborn], { lease: Duration.millis(600) }).pipe(
        Effect.provideService(TaskStore, observed)
      )
      const { id } = yield* Tasks.enqueue(Stubborn, {})
      yield* Deferred.await(started)
      expect(yield* s.cancel(id, "no longer wanted")).toBe(true)
      yield* Deferred.await(judged)
      yield* Deferred.succeed(gate, undefined)
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: id, outcome: "cancelled" })
      expect(yield* getTask(id)).toMatchObject({ status: "cancelled", result: null })
    }).pipe(Effect.scoped))

  // The same race with this instance's own stale claim in hand: the cancel found the
  // stale run (stalled past its lease, reaped), and the newer claim of the task was
  // still on its way back. Both must stop: the new claim's handler never starts.
  it.effect("a cancel that finds a stale run while the task's newer claim is on its way back stops both", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const bus = yield* CancelBus.CancelBus
      const sql = yield* SqlClient
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const attempts = yield* Ref.make<Array<number>>([])
      const Stuck = Job.define({
        name: "stale-cancel", queue: "stale-cancel", payload: Schema.Struct({ other: Schema.Boolean }),
        run: (p, ctx) =>
          p.other ? Effect.void : Effect.andThen(
            Ref.update(attempts, (xs) => [...xs, ctx.attempt]),
            ctx.attempt === 1 ? Effect.andThen(Deferred.succeed(started, undefined), Effect.uninterruptible(Deferred.await(release))) : Effect.void
          )
      })
      const { id } = yield* Tasks.enqueue(Stuck, { other: false })
      const delivered = yield* Queue.unbounded<string>()
      const observedBus = CancelBus.CancelBus.of({
        publish: bus.publish,
        subscribe: Effect.map(bus.subscribe, (take) => Effect.tap(take, (taskId) => Queue.offer(delivered, taskId)))
      })
      let claims = 0
      const raced = yield* Deferred.make<void>()
      const racingStore = TaskStore.of({
        ...store,
        claimToRun: (o) =>
          Effect.tap(store.claimToRun(o), (tasks) =>
            !tasks.some((t) => t.id === id) || ++claims !== 2 ? Effect.void : Effect.gen(function*() {
              yield* store.cancel([id], "cancelled in the race")
              yield* bus.publish(id)
              while ((yield* Queue.take(delivered)) !== id) { /* another task's message */ }
              yield* Deferred.succeed(raced, undefined)
            }))
      })
      const s = yield* Runtime.startSupervisor([Stuck], { lease: Duration.seconds(3), reapInterval: Duration.millis(30), shutdownGrace: Duration.millis(50) }).pipe(
        Effect.provideService(TaskStore, racingStore),
        Effect.provideService(CancelBus.CancelBus, observedBus)
      )
      yield* Deferred.await(started)
      // The stall: the lease runs out, this worker's reaper takes the task back, its
      // dispatcher claims it again, and the cancel lands while that claim returns.
      yield* sql`update taskfiber.tasks set lease_expires_at = clock_timestamp() - interval '1 second' where id = ${id}::uuid`
      yield* Deferred.await(raced)
      // A later task's outcome: by then the claim that raced was handled.
      const other = yield* Tasks.enqueue(Stuck, { other: true })
      expect(yield* Runtime.outcomesOf(s, 1)).toEqual([{ taskId: other.id, outcome: "succeeded" }])
      expect(yield* Ref.get(attempts)).toEqual([1])
      yield* Deferred.succeed(release, undefined)
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: id, outcome: "cancelled" })
      expect(claims).toBe(2)
      expect(yield* Ref.get(attempts)).toEqual([1])
      expect(yield* getTask(id)).toMatchObject({ status: "cancelled", attempt: 2 })
    }).pipe(Effect.scoped))
})
