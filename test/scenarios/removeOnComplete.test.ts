/**
 * Tasks that leave on success (`removeOnComplete`): deleted by the statement that
 * completes them, no history of their happy path, everything else recorded.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Option, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PermanentError, TransientError } from "../../src/domain/Errors.ts"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const N = Schema.Struct({ n: Schema.Int })

const rowsOf = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ id: string; status: string; events: number; dead: number }>`
      select t.id, t.status::text as status,
             (select count(*)::int from taskfiber.task_events e where e.task_id = t.id) as events,
             (select count(*)::int from taskfiber.dead_letters d where d.task_id = t.id) as dead
        from taskfiber.tasks t where t.id = any(${[...ids]}::uuid[]) order by t.id`)

const eventsOf = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ n: number }>`select count(*)::int as n from taskfiber.task_events where task_id = any(${[...ids]}::uuid[])`
  ).pipe(Effect.map((rows) => rows[0]!.n))

it.layer(Runtime.storeOnly, { timeout: 120_000, excludeTestServices: true })("removeOnComplete", (it) => {
  it.effect("a job's tasks write no history and are deleted by their completion; a kept job's stay with three events", () =>
    Effect.gen(function*() {
      const Lean = Job.define({ name: "lean", queue: "roc-1", payload: N, removeOnComplete: true, run: (p) => Effect.succeed(p.n) })
      const Kept = Job.define({ name: "kept", queue: "roc-1", payload: N, run: (p) => Effect.succeed(p.n) })
      const lean = yield* Effect.forEach([1, 2, 3], (n) => Tasks.enqueue(Lean, { n }))
      const kept = yield* Effect.forEach([4, 5], (n) => Tasks.enqueue(Kept, { n }))
      // Enqueued: a removed task has no `created` event.
      expect(yield* eventsOf(lean.map((r) => r.id))).toBe(0)
      expect(yield* eventsOf(kept.map((r) => r.id))).toBe(2)
      // Per task, the option given at enqueue overrides the job's.
      const keptLean = yield* Tasks.enqueue(Lean, { n: 6 }, { removeOnComplete: false })
      const s = yield* Runtime.startSupervisor([Lean, Kept])
      const outcomes = yield* Runtime.outcomesOf(s, 6)
      expect(outcomes.every((o) => o.outcome === "succeeded")).toBe(true)
      expect(yield* rowsOf(lean.map((r) => r.id))).toEqual([])
      expect(yield* eventsOf(lean.map((r) => r.id))).toBe(0)
      const stayed = yield* rowsOf([...kept.map((r) => r.id), keptLean.id])
      expect(stayed.map((r) => [r.status, r.events])).toEqual([["succeeded", 3], ["succeeded", 3], ["succeeded", 3]])
    }).pipe(Effect.scoped))

  it.effect("off the happy path everything is recorded: a retry until the success deletes it, a failure stays with its dead letter", () =>
    Effect.gen(function*() {
      const runs = yield* Ref.make(0)
      const retry = RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 1, maxAttempts: 3 })
      const Flaky = Job.define({
        name: "flaky-lean", queue: "roc-2", payload: N, removeOnComplete: true, retry,
        run: () => Effect.flatMap(Ref.updateAndGet(runs, (n) => n + 1), (n) =>
          n === 1 ? Effect.fail(new TransientError({ message: "first run fails" })) : Effect.void)
      })
      const Doomed = Job.define({
        name: "doomed-lean", queue: "roc-2", payload: N, removeOnComplete: true,
        run: () => Effect.fail(new PermanentError({ message: "never works" }))
      })
      const flaky = yield* Tasks.enqueue(Flaky, { n: 1 })
      const doomed = yield* Tasks.enqueue(Doomed, { n: 2 })
      const s = yield* Runtime.startSupervisor([Flaky, Doomed])
      const seen = yield* Runtime.outcomesOf(s, 3)
      expect(seen.map((o) => o.outcome).sort()).toEqual(["failed", "retrying", "succeeded"])
      // The success after a retry deleted the task with the retry's event.
      expect(yield* rowsOf([flaky.id])).toEqual([])
      expect(yield* eventsOf([flaky.id])).toBe(0)
      // The failure: its row, its `failed` event and its dead letter.
      const [failed] = yield* rowsOf([doomed.id])
      expect(failed).toMatchObject({ status: "failed", events: 1, dead: 1 })
    }).pipe(Effect.scoped))

  it.effect("one completion statement deletes the removed tasks and updates the kept ones of its batch", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const requests = [true, false, true, false].map((removeOnComplete, n) => ({ type: "t", queue: "roc-3", payload: { n }, removeOnComplete }))
      const enqueued = yield* store.enqueueMany(requests)
      const claimed = yield* store.claim({ workerId: "w-roc", queues: ["roc-3"], limit: 10, leaseMs: 60_000 })
      expect(claimed.map((t) => t.removeOnComplete).sort()).toEqual([false, false, true, true])
      const done = yield* store.complete("w-roc", claimed.map((t) => ({ id: t.id, revision: t.revision, result: { ok: t.id } })))
      expect(done.map((c) => c.id).sort()).toEqual(enqueued.map((r) => r.id).sort())
      const left = yield* rowsOf(enqueued.map((r) => r.id))
      expect(left.map((r) => r.id)).toEqual([enqueued[1]!.id, enqueued[3]!.id].sort())
      expect(left.map((r) => [r.status, r.events])).toEqual([["succeeded", 3], ["succeeded", 3]])
      expect(Option.isNone(yield* store.get(enqueued[0]!.id))).toBe(true)
    }))

  // The short way of complete_tasks (schema/functions/complete.sql) is tried only
  // for a batch whose items all say `remove`; a wrong mark must cost time, never a
  // task.
  it.effect("a batch marked all-removed that holds a kept task is undone and completed the general way", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const requests = [true, false, true].map((removeOnComplete, n) => ({ type: "t", queue: "roc-7", payload: { n }, removeOnComplete }))
      const enqueued = yield* store.enqueueMany(requests)
      const claimed = yield* store.claim({ workerId: "w-seven", queues: ["roc-7"], limit: 10, leaseMs: 60_000 })
      const done = yield* store.complete("w-seven", claimed.map((t) => ({ id: t.id, revision: t.revision, result: { ok: 1 }, remove: true })))
      expect(done.map((c) => c.id).sort()).toEqual(enqueued.map((r) => r.id).sort())
      const left = yield* rowsOf(enqueued.map((r) => r.id))
      expect(left.map((r) => [r.id, r.status, r.events])).toEqual([[enqueued[1]!.id, "succeeded", 3]])
      expect(yield* eventsOf([enqueued[0]!.id, enqueued[2]!.id])).toBe(0)
    }))

  it.effect("a batch with a task that is no longer this worker's still deletes the rest, and leaves that one alone", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const sql = yield* SqlClient
      const enqueued = yield* store.enqueueMany([0, 1, 2].map((n) => ({ type: "t", queue: "roc-6", payload: { n }, removeOnComplete: true })))
      const claimed = yield* store.claim({ workerId: "w-six", queues: ["roc-6"], limit: 3, leaseMs: 60_000 })
      expect(claimed).toHaveLength(3)
      // The middle one was reaped and claimed by another worker meanwhile.
      const lost = [...enqueued.map((r) => r.id)].sort()[1]!
      yield* sql`update taskfiber.tasks set worker_id = 'w-other' where id = ${lost}::uuid`
      const done = yield* store.complete("w-six", claimed.map((t) => ({ id: t.id, revision: t.revision, result: null, remove: t.removeOnComplete })))
      expect(done.map((c) => c.id).sort()).toEqual(enqueued.map((r) => r.id).filter((id) => id !== lost).sort())
      expect((yield* rowsOf(enqueued.map((r) => r.id))).map((r) => [r.id, r.status])).toEqual([[lost, "running"]])
    }))

  it.effect("crash between the handler's end and the completion: the lease expires, the reaper retries it, its success deletes it", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const sql = yield* SqlClient
      const [task] = yield* store.enqueueMany([{ type: "t", queue: "roc-4", removeOnComplete: true }])
      // The worker claimed it, ran it, and died before its completion committed.
      const [dead] = yield* store.claim({ workerId: "w-dead", queues: ["roc-4"], limit: 1, leaseMs: 60_000 })
      yield* sql`update taskfiber.tasks set lease_expires_at = now() - interval '1 second' where id = ${task!.id}::uuid`
      const reaped = yield* store.reapExpired(10)
      expect(reaped.map((t) => [t.id, t.status])).toEqual([[task!.id, "retrying"]])
      expect(yield* eventsOf([task!.id])).toBe(1) // running → retrying, recorded
      // A completion from the dead worker changes nothing now.
      expect(yield* store.complete("w-dead", [{ id: task!.id, revision: dead!.revision, result: null, remove: true }])).toEqual([])
      yield* sql`update taskfiber.tasks set run_at = now() where id = ${task!.id}::uuid`
      const again = yield* store.claim({ workerId: "w-live", queues: ["roc-4"], limit: 1, leaseMs: 60_000 })
      expect(again.map((t) => [t.id, t.attempt])).toEqual([[task!.id, 2]])
      expect(yield* store.complete("w-live", [{ id: task!.id, revision: again[0]!.revision, result: null, remove: true }])).toEqual([{ id: task!.id, revision: again[0]!.revision }])
      expect(yield* rowsOf([task!.id])).toEqual([])
      expect(yield* eventsOf([task!.id])).toBe(0)
    }))

  it.effect("with the outbox on, a removed task's every status change is relayed, its success with the result", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const sql = yield* SqlClient
      yield* sql`update taskfiber.settings set outbox_topic = 'taskfiber.status'`
      yield* Effect.addFinalizer(() => Effect.orDie(sql`update taskfiber.settings set outbox_topic = null`))
      const [task] = yield* store.enqueueMany([{ type: "t", queue: "roc-5", removeOnComplete: true, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }])
      const [claim] = yield* store.claim({ workerId: "w-out", queues: ["roc-5"], limit: 1, leaseMs: 60_000 })
      yield* store.complete("w-out", [{ id: task!.id, revision: claim!.revision, result: { sent: 1 }, remove: true }])
      const relayed = yield* sql<{ payload: { from: string | null; to: string; result: unknown; attempt: number }; headers: unknown }>`
        select payload, headers from taskfiber.outbox where key = ${task!.id} order by id`
      expect(relayed.map((r) => [r.payload.from, r.payload.to])).toEqual([[null, "queued"], ["queued", "running"], ["running", "succeeded"]])
      expect(relayed[2]!.payload).toMatchObject({ result: { sent: 1 }, attempt: 1 })
      expect(relayed[2]!.headers).toEqual({ traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" })
      expect(yield* rowsOf([task!.id])).toEqual([])
    }).pipe(Effect.scoped))
})
