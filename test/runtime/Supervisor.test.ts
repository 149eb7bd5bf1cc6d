import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Layer, Logger, Option, Queue, References, Schema, Scope } from "effect"
import { TransientError } from "../../src/domain/Errors.ts"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as EventLog from "../../src/observability/EventLog.ts"
import { type RuntimeEvent, RuntimeEvents } from "../../src/observability/RuntimeEvents.ts"
import * as Job from "../../src/runtime/Job.ts"
import { Supervisor } from "../../src/runtime/Supervisor.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const Echo = Job.define({
  name: "echo",
  queue: "basics",
  payload: Schema.Struct({ text: Schema.String }),
  run: (payload) => Effect.succeed(payload)
})
it.layer(Runtime.layer([Echo]), { timeout: 60_000, excludeTestServices: true })("Supervisor", (it) => {
  it.effect("runs a task to succeeded with its result", () =>
    Effect.gen(function*() {
      const { id } = yield* Tasks.enqueue(Echo, { text: "hi" })
      const [outcome] = yield* Runtime.awaitOutcomes(1)
      expect(outcome).toEqual({ taskId: id, outcome: "succeeded" })
      const task = Option.getOrThrow(yield* Effect.flatMap(TaskStore, (s) => s.get(id))).task
      expect(task).toMatchObject({ status: "succeeded", attempt: 1, result: { text: "hi" } })
    }))

  it.effect("tells RuntimeEvents of each run: claimed, started, settled, in that order, with its worker", () =>
    Effect.gen(function*() {
      const events = yield* RuntimeEvents
      const s = yield* Supervisor
      const heard: Array<RuntimeEvent> = []
      const settled = yield* Deferred.make<void>()
      const isMine = (task: { readonly payload: unknown }) => (task.payload as { text?: string }).text === "seen"
      yield* events.subscribe(["Claimed", "Started", "Settled"], (e) => {
        heard.push(e)
        if (e._tag === "Settled" && isMine(e.task)) Deferred.doneUnsafe(settled, Exit.void)
      })
      const { id } = yield* Tasks.enqueue(Echo, { text: "seen" })
      yield* Deferred.await(settled)
      const mine = heard.filter((e) =>
        "workerId" in e && e.workerId === s.workerId &&
        (e._tag === "Claimed" ? e.tasks.some((t) => t.id === id) : e._tag === "Started" || e._tag === "Settled" ? e.task.id === id : false)
      )
      expect(mine.map((e) => e._tag)).toEqual(["Claimed", "Started", "Settled"])
      expect(mine[2]).toMatchObject({ outcome: "succeeded" })
    }).pipe(Effect.scoped))
})


it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("Supervisor logs", (it) => {
  // A supervisor's lines obey the minimum level it was built with, also those of
  // its shutdown, which runs on whatever fiber closes its scope (here one without
  // the level, as when an application disposes a ManagedRuntime).
  const run = (level: "Warn" | "Info") => {
    const lines: Array<{ readonly level: string; readonly message: string }> = []
    const collector = Logger.make((o) => {
      lines.push({ level: o.logLevel, message: String(Array.isArray(o.message) ? o.message[0] : o.message) })
    })
    return Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      // A queue per run: the first run's blocked task is released, not finished.
      const Quick = Job.define({ name: `quick-${level}`, queue: `logs-${level}`, payload: Schema.Struct({}), run: () => Effect.void })
      const Blocked = Job.define({
        name: `blocked-${level}`,
        queue: `logs-${level}`,
        payload: Schema.Struct({}),
        run: () => Effect.andThen(Deferred.succeed(started, undefined), Effect.never)
      })
      const scope = yield* Scope.make()
      yield* Effect.gen(function*() {
        // The log lines of the runtime's events, built with this run's level (the
        // base layer's own EventLog writes to the default logger, not collected here).
        yield* Layer.build(Layer.fresh(EventLog.layer))
        const s = yield* Runtime.startSupervisor([Quick, Blocked], { shutdownGrace: Duration.millis(50) })
        const outcomes = yield* s.outcomes
        for (let i = 0; i < 3; i++) yield* Tasks.enqueue(Quick, {})
        for (let i = 0; i < 3; i++) yield* Queue.take(outcomes)
        yield* Tasks.enqueue(Blocked, {})
        yield* Deferred.await(started) // running when the scope closes
      }).pipe(Scope.provide(scope), Effect.provideService(References.MinimumLogLevel, level))
      yield* Scope.close(scope, Exit.void)
      return lines
    }).pipe(Effect.provide(Logger.layer([collector])))
  }

  it.effect("below Info nothing is logged at Info, shutdown included; at Info every settled task is", () =>
    Effect.gen(function*() {
      const quiet = yield* run("Warn")
      expect(quiet.filter((l) => l.level === "Info" || l.level === "Debug" || l.level === "Trace")).toEqual([])
      const chatty = yield* run("Info")
      const messages = chatty.map((l) => l.message)
      expect(messages.filter((m) => m === "task settled")).toHaveLength(4) // 3 succeeded, 1 released
      expect(messages).toContain("shutting down: releasing unfinished jobs to the queue")
    }))
})

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("Supervisor retries", (it) => {
  const Flaky = Job.define({
    name: "flaky-once", queue: "retry-race", payload: Schema.Struct({}),
    retry: RetryPolicy.exponential({ baseMs: 5, maxDelayMs: 10, maxAttempts: 3 }),
    run: (_, ctx) => ctx.attempt === 1 ? Effect.fail(new TransientError({ message: "once" })) : Effect.void
  })

  // The dispatcher sleeps until the earliest run_at, then claims. Its timer can fire
  // a fraction of a millisecond before the database's clock reaches run_at; the
  // claim then finds nothing, and a next-due query that asked only for tasks in
  // the future would skip the task, leaving it for the 30 s idle re-check (one
  // retry in ten or so). Sixty retries, one at a time, each given 5 s.
  it.effect("a retry is claimed when it comes due, also when the dispatcher's timer fires early", () =>
    Effect.gen(function*() {
      const s = yield* Runtime.startSupervisor([Flaky])
      for (let i = 0; i < 60; i++) {
        yield* Tasks.enqueue(Flaky, {})
        const outcomes = yield* Runtime.outcomesOf(s, 2).pipe(Effect.timeoutOption(Duration.seconds(5)))
        expect(Option.map(outcomes, (o) => o.map((x) => x.outcome))).toEqual(Option.some(["retrying", "succeeded"]))
      }
    }).pipe(Effect.scoped))
})

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("Supervisor start", (it) => {
  const Ping = Job.define({ name: "ping", queue: "start-race", payload: Schema.Struct({}), run: () => Effect.void })

  // The supervisor is up only once its wake-up subscription is live: a task
  // enqueued between its first claim and a subscription still on its way would
  // never be notified, and wait for the 30 s idle re-check.
  it.effect("a task enqueued the moment a supervisor is up is notified, not left for the idle recheck", () =>
    Effect.gen(function*() {
      for (let i = 0; i < 10; i++) {
        const scope = yield* Scope.make()
        yield* Effect.gen(function*() {
          const s = yield* Runtime.startSupervisor([Ping])
          yield* Tasks.enqueue(Ping, {})
          const outcomes = yield* Runtime.outcomesOf(s, 1).pipe(Effect.timeoutOption(Duration.seconds(5)))
          expect(Option.isSome(outcomes)).toBe(true)
        }).pipe(Scope.provide(scope))
        yield* Scope.close(scope, Exit.void)
      }
    }))
})

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("Supervisor shutdown", (it) => {
  // Each task's "settled" Deferred must exist before the shutdown's first wait:
  // made only when its wait came, a task released while the wait was on an
  // earlier one would get its Deferred after it had settled, and the shutdown
  // would never end.
  it.effect("ten handlers still running past the grace are all released, and the shutdown ends", () =>
    Effect.gen(function*() {
      const Stuck = Job.define({ name: "stuck", queue: "shutdown-many", payload: Schema.Struct({}), run: () => Effect.never })
      const ids = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.map(Tasks.enqueue(Stuck, {}), (r) => r.id))
      const scope = yield* Scope.make()
      // A second's grace: the ten releases are written within the grace after the
      // interruption, and on a loaded machine 100 ms was too short for them (2 of 10
      // were left to their leases, as designed for handlers that do not stop).
      const s = yield* Runtime.startSupervisor([Stuck], { maxConcurrentJobs: 10, shutdownGrace: Duration.seconds(1) }).pipe(
        Scope.provide(scope)
      )
      expect(yield* s.held).toHaveLength(10)
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption(Duration.seconds(10)))
      expect(Option.isSome(closed)).toBe(true)
      const store = yield* TaskStore
      const tasks = yield* Effect.forEach(ids, (id) => Effect.map(store.get(id), (t) => Option.getOrThrow(t).task))
      expect(tasks.map((t) => [t.status, t.attempt])).toEqual(ids.map(() => ["queued", 0]))
    }))

  // Before, the wait after the grace had no bound: a handler that ignores its
  // interruption held the shutdown (and SIGTERM) for ever.
  it.effect("a handler that ignores interruption holds the shutdown for one more grace at most; its task is left to its lease", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const Deaf = Job.define({
        name: "deaf", queue: "shutdown-deaf", payload: Schema.Struct({}),
        run: () => Effect.andThen(Deferred.succeed(started, undefined), Effect.uninterruptible(Deferred.await(gate)))
      })
      const { id } = yield* Tasks.enqueue(Deaf, {})
      const scope = yield* Scope.make()
      yield* Runtime.startSupervisor([Deaf], { shutdownGrace: Duration.millis(100) }).pipe(Scope.provide(scope))
      yield* Deferred.await(started)
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption(Duration.seconds(10)))
      expect(Option.isSome(closed)).toBe(true)
      const store = yield* TaskStore
      // Still running under the stopped worker's lease, which nobody renews: the
      // reaper of any worker retries it once it expires.
      expect(Option.getOrThrow(yield* store.get(id)).task).toMatchObject({ status: "running", attempt: 1 })
      yield* Deferred.succeed(gate, undefined)
    }))
})
