/**
 * Pausing a queue: its tasks wait, untouched, while a supervisor serving it runs
 * every other queue's; a resume wakes the supervisor (the notification, well within
 * the dispatcher's 30 s re-check) and they run. Pausing and resuming are idempotent;
 * a task already running in a paused queue finishes; an enqueue into one succeeds;
 * the dispatcher's next due time does not count a paused queue's tasks (else each
 * would wake it when it comes due, for claims that skip it).
 *
 * Nothing is ordered by sleeping: each step awaits an outcome, a handler's start or
 * a notification, each bounded.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Queue, Schema } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { channel } from "../../src/coordination/PgWakeups.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { QueuePauses } from "../../src/store/QueuePauses.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

/** Well below the dispatcher's idle re-check (30 s): only a wake-up gets a task claimed this soon. */
const sooner = Duration.seconds(10)

/** Status and attempt of each task, in the order of `ids`. */
const states = (ids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ id: string; status: string; attempt: number }>`
      select id, status::text as status, attempt from taskfiber.tasks where id = any(${[...ids]}::uuid[])`
    return ids.map((id) => {
      const row = rows.find((r) => r.id === id)
      return row === undefined ? undefined : { status: row.status, attempt: row.attempt }
    })
  })

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("QueuePauses", (it) => {
  it.effect("a paused queue's tasks wait while the other queue's run; resumed, they run, woken by the resume", () =>
    Effect.gen(function*() {
      const pauses = yield* QueuePauses
      const store = yield* TaskStore
      const InA = Job.define({ name: "pause-a", queue: "pause-a", payload: Schema.Struct({ n: Schema.Number }), run: () => Effect.void })
      const InB = Job.define({ name: "pause-b", queue: "pause-b", payload: Schema.Struct({ n: Schema.Number }), run: () => Effect.void })
      const s = yield* Runtime.startSupervisor([InA, InB])

      expect(yield* pauses.pause("pause-b", "deploy of the mail relay")).toBe(true)
      const a = yield* Tasks.enqueueMany(InA, [1, 2, 3, 4, 5].map((n) => ({ n })))
      const b = yield* Tasks.enqueueMany(InB, [1, 2, 3, 4, 5].map((n) => ({ n })))
      expect(b.every((r) => r.created)).toBe(true)

      // Queue a runs to its outcomes; queue b's tasks, enqueued in between, are as
      // they were, and no claim takes them.
      const settled = yield* Runtime.outcomesOf(s, a.length)
      expect(new Set(settled.map((o) => o.taskId))).toEqual(new Set(a.map((r) => r.id)))
      expect(settled.every((o) => o.outcome === "succeeded")).toBe(true)
      expect(yield* states(b.map((r) => r.id))).toEqual(b.map(() => ({ status: "queued", attempt: 0 })))
      expect(yield* store.claimToRun({ workerId: "probe", queues: ["pause-b"], limit: 10, leaseMs: 60_000 })).toEqual([])
      expect(yield* store.claimToRun({ workerId: "probe", limit: 10, leaseMs: 60_000 })).toEqual([])

      expect(yield* pauses.resume("pause-b")).toBe(true)
      const resumed = yield* Runtime.outcomesOf(s, b.length).pipe(Effect.timeout(sooner))
      expect(new Set(resumed.map((o) => o.taskId))).toEqual(new Set(b.map((r) => r.id)))
      expect(yield* states(b.map((r) => r.id))).toEqual(b.map(() => ({ status: "succeeded", attempt: 1 })))
    }).pipe(Effect.scoped))

  it.effect("pause and resume are idempotent and say whether they changed anything; the first pause's reason is kept", () =>
    Effect.gen(function*() {
      const pauses = yield* QueuePauses
      expect(yield* pauses.pause("idem", "first")).toBe(true)
      expect(yield* pauses.pause("idem", "second")).toBe(false)
      expect(yield* pauses.pause("idem-no-reason")).toBe(true)
      const listed = (yield* pauses.paused).filter((p) => p.queue.startsWith("idem"))
      expect(listed.map((p) => ({ queue: p.queue, reason: p.reason }))).toEqual([
        { queue: "idem", reason: "first" },
        { queue: "idem-no-reason", reason: undefined }
      ])
      expect(listed.every((p) => p.pausedAt instanceof Date)).toBe(true)
      expect(yield* pauses.resume("idem")).toBe(true)
      expect(yield* pauses.resume("idem")).toBe(false)
      expect(yield* pauses.resume("idem-no-reason")).toBe(true)
      expect((yield* pauses.paused).filter((p) => p.queue.startsWith("idem"))).toEqual([])
      // A queue name is bounded as a task's is.
      const error = yield* pauses.pause("").pipe(Effect.flip)
      expect(error).toMatchObject({ _tag: "DatabaseError", category: "constraint", constraint: "paused_queues_queue_length" })
    }))

  it.effect("a resume notifies the dispatchers' channel with the queue, paused or not", () =>
    Effect.gen(function*() {
      const pauses = yield* QueuePauses
      const pg = yield* PgClient.PgClient
      const notifications = yield* pg.listen(channel)
      yield* pauses.pause("notified", undefined)
      yield* pauses.resume("notified")
      expect((yield* Queue.take(notifications).pipe(Effect.timeout(sooner))).payload).toBe("notified")
      yield* pauses.resume("notified")
      expect((yield* Queue.take(notifications).pipe(Effect.timeout(sooner))).payload).toBe("notified")
    }).pipe(Effect.scoped))

  it.effect("a task running when its queue is paused finishes; the next one waits for the resume", () =>
    Effect.gen(function*() {
      const pauses = yield* QueuePauses
      const store = yield* TaskStore
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const Gated = Job.define({
        name: "pause-gated", queue: "pause-gated", payload: Schema.Struct({ first: Schema.Boolean }),
        run: ({ first }) => first ? Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(release)) : Effect.void
      })
      const s = yield* Runtime.startSupervisor([Gated])
      const running = yield* Tasks.enqueue(Gated, { first: true })
      yield* Deferred.await(started).pipe(Effect.timeout(sooner))
      expect(yield* pauses.pause("pause-gated")).toBe(true)
      const waiting = yield* Tasks.enqueue(Gated, { first: false })
      yield* Deferred.succeed(release, undefined)
      expect(yield* Runtime.outcomesOf(s, 1)).toEqual([{ taskId: running.id, outcome: "succeeded" }])
      expect(yield* states([waiting.id])).toEqual([{ status: "queued", attempt: 0 }])
      expect(yield* store.claimToRun({ workerId: "probe", queues: ["pause-gated"], limit: 10, leaseMs: 60_000 })).toEqual([])
      yield* pauses.resume("pause-gated")
      expect(yield* Runtime.outcomesOf(s, 1).pipe(Effect.timeout(sooner))).toEqual([{ taskId: waiting.id, outcome: "succeeded" }])
    }).pipe(Effect.scoped))

  it.effect("an enqueue into a paused queue, even one paused before its first task, succeeds and waits; a claim of every queue skips it", () =>
    Effect.gen(function*() {
      const pauses = yield* QueuePauses
      const store = yield* TaskStore
      yield* pauses.pause("paused-early")
      const held = yield* store.enqueue({ type: "t", queue: "paused-early" })
      const free = yield* store.enqueue({ type: "t", queue: "not-paused" })
      expect(held.created).toBe(true)
      const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000 })
      expect(claimed.map((t) => t.id)).toContain(free.id)
      expect(claimed.map((t) => t.id)).not.toContain(held.id)
      expect(yield* states([held.id])).toEqual([{ status: "queued", attempt: 0 }])
      yield* pauses.resume("paused-early")
      expect((yield* store.claim({ workerId: "w", queues: ["paused-early"], limit: 10, leaseMs: 60_000 })).map((t) => t.id))
        .toEqual([held.id])
    }))

  it.effect("msUntilNextDue counts no paused queue's task, due or not yet due", () =>
    Effect.gen(function*() {
      const pauses = yield* QueuePauses
      const store = yield* TaskStore
      yield* store.enqueue({ type: "t", queue: "next-due-paused", delayMs: 60_000 })
      const queues = ["next-due-paused"]
      expect(Option.isSome(yield* store.msUntilNextDue({ queues }))).toBe(true)
      yield* pauses.pause("next-due-paused")
      expect(yield* store.msUntilNextDue({ queues })).toEqual(Option.none())
      // A due one too, which a claimer's window would otherwise count (≤ 0: claim now).
      yield* store.enqueue({ type: "t", queue: "next-due-paused" })
      expect(yield* store.msUntilNextDue({ queues, dueWithinMs: 600_000 })).toEqual(Option.none())
      yield* pauses.resume("next-due-paused")
      expect(Option.getOrThrow(yield* store.msUntilNextDue({ queues, dueWithinMs: 600_000 }))).toBeLessThanOrEqual(0)
    }))
})
