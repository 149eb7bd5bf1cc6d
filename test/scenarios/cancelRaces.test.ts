/**
 * Cancellation against the runtime's own timing: a cancel that arrives while the
 * claim that took the task is still on its way back, a cancel written by another
 * instance, and a cancel followed by the loss of the lease. Each run ends reported
 * as what happened to its task: cancelled.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Queue, Ref, Schema } from "effect"
import * as CancelBus from "../../src/runtime/CancelBus.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map((t) => Option.getOrThrow(t).task))

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("cancellation races", (it) => {
  // Before, a cancel that the supervisor heard before its claim's answer arrived
  // found no task to stop and was dropped: the handler ran until the next heartbeat.
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
      expect(yield* s.running).toEqual([])
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
})
