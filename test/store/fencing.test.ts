/**
 * The store's guarantees per claim (schema/functions/run.sql): every statement of a run names its
 * claim and is refused once that claim no longer holds the task, even when the same
 * worker holds a newer claim of it; a prefetched task whose start was never recorded
 * is handed back by the reaper with its attempt; the claim takes only the types
 * asked for; a task and its history are read in one snapshot.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const Env = PgTaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer()))
const lease = 60_000
const boom = { tag: "Boom", message: "boom", classification: "transient" } as const

const expire = (id: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`update taskfiber.tasks set lease_expires_at = clock_timestamp() - interval '1 second' where id = ${id}::uuid`)

it.layer(Env, { timeout: 60_000 })("fencing", (it) => {
  it.effect("a stale claim of the same worker is refused by every statement; the current claim is accepted", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const sql = yield* SqlClient
      const { id } = yield* s.enqueue({ type: "t", queue: "fence" })
      const [stale] = yield* s.claim({ workerId: "w", queues: ["fence"], limit: 1, leaseMs: lease })
      yield* expire(id)
      expect((yield* s.reapExpired(10)).map((t) => t.status)).toEqual(["retrying"])
      const [current] = yield* s.claim({ workerId: "w", queues: ["fence"], limit: 1, leaseMs: lease })
      expect(current!.revision).toBeGreaterThan(stale!.revision)
      // Everything the stalled run might still do, refused.
      expect(yield* s.complete("w", [{ id, revision: stale!.revision, result: "stale" }])).toEqual([])
      expect(yield* s.complete("w", [{ id, revision: stale!.revision, result: "stale", remove: true }])).toEqual([])
      expect(Option.isNone(yield* s.retry("w", stale!, boom, 0))).toBe(true)
      expect(Option.isNone(yield* s.fail("w", stale!, boom))).toBe(true)
      expect(yield* s.cancelClaimed("w", stale!, "stale")).toBe(false)
      expect(yield* s.recordProgress("w", stale!, { progress: "stale", checkpoint: "stale" })).toBe(false)
      expect(yield* s.recordStart("w", stale!)).toBe(false)
      expect(yield* s.release("w", [stale!])).toEqual([])
      expect(yield* s.extendLeases("w", lease, [stale!])).toEqual([])
      const [row] = yield* sql<{ status: string; revision: number; progress: unknown; result: unknown }>`
        select status::text, revision, progress, result from taskfiber.tasks where id = ${id}::uuid`
      expect(row).toEqual({ status: "running", revision: current!.revision, progress: null, result: null })
      // The current claim's statements are accepted.
      expect(yield* s.extendLeases("w", lease, [current!])).toEqual([id])
      expect(yield* s.recordProgress("w", current!, { progress: { pct: 10 } })).toBe(true)
      // A batch naming the stale claim beside the current one: only the current completes.
      expect(yield* s.complete("w", [
        { id, revision: stale!.revision, result: "stale" },
        { id, revision: current!.revision, result: "current" }
      ])).toEqual([{ id, revision: current!.revision }])
      expect(Option.getOrThrow(yield* s.get(id)).task).toMatchObject({ status: "succeeded", result: "current", progress: { pct: 10 } })
    }))

  it.effect("a claim names the tasks that start at once; the reaper hands back the others with their attempt, at their place", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const requests = Array.from({ length: 6 }, (_, n) => ({ type: "t", queue: "give-back", maxAttempts: 1, payload: { n } }))
      const ids = (yield* s.enqueueMany(requests)).map((r) => r.id)
      const claimed = yield* s.claimToRun({ workerId: "dead", queues: ["give-back"], limit: 6, leaseMs: lease, runNow: 2 })
      expect(claimed.map((t) => t.startRecorded)).toEqual([true, true, false, false, false, false])
      // The heartbeat records that one prefetched task has started since.
      expect(yield* s.extendLeases("dead", lease, claimed.map((t, i) => ({ ...t, started: i === 2 })))).toHaveLength(6)
      for (const id of ids) yield* expire(id)
      const reaped = new Map((yield* s.reapExpired(10)).map((t) => [t.id, t]))
      // Started (claimed to start, or recorded by the heartbeat), out of attempts: failed.
      for (const t of claimed.slice(0, 3)) expect(reaped.get(t.id)).toMatchObject({ status: "failed", attempt: 1 })
      // Never started: queued again, attempt given back, run_at kept.
      for (const t of claimed.slice(3)) {
        expect(reaped.get(t.id)).toMatchObject({ status: "queued", attempt: 0, lastError: null })
        expect(reaped.get(t.id)!.runAt.getTime()).toBeLessThan(reaped.get(t.id)!.updatedAt.getTime())
      }
      // Claimed again into a buffer, such a task must have its start recorded before
      // it runs; claimed to start at once, the claim records it.
      const again = yield* s.claimToRun({ workerId: "next", queues: ["give-back"], limit: 3, leaseMs: lease, runNow: 1 })
      expect(again.map((t) => [t.startRecorded, t.recordStartFirst])).toEqual([[true, false], [false, true], [false, true]])
      expect(yield* s.recordStart("next", again[1]!)).toBe(true)
      for (const t of again) yield* expire(t.id)
      const second = new Map((yield* s.reapExpired(10)).map((t) => [t.id, t.status]))
      expect([second.get(again[0]!.id), second.get(again[1]!.id), second.get(again[2]!.id)]).toEqual(["failed", "failed", "queued"])
    }))

  it.effect("a claim takes only the types asked for; others stay queued, untouched", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const [unknown] = yield* s.enqueueMany([{ type: "unknown-here", queue: "types", priority: 9 }])
      const [known] = yield* s.enqueueMany([{ type: "known", queue: "types" }])
      // Several levels (priorities 9 and 0) and one level both filter by type.
      const claimed = yield* s.claim({ workerId: "w", queues: ["types"], types: ["known"], limit: 5, leaseMs: lease })
      expect(claimed.map((t) => t.id)).toEqual([known!.id])
      const one = yield* s.enqueueMany([{ type: "known", queue: "types-one" }, { type: "unknown-here", queue: "types-one" }])
      expect((yield* s.claim({ workerId: "w", queues: ["types-one"], types: ["known"], limit: 5, leaseMs: lease })).map((t) => t.id))
        .toEqual([one[0]!.id])
      expect(Option.getOrThrow(yield* s.get(unknown!.id)).task).toMatchObject({ status: "queued", attempt: 0 })
    }))

  it.effect("get reads a task and its history in one snapshot: they agree while the task moves", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const { id } = yield* s.enqueue({ type: "t", queue: "snapshot", maxAttempts: 1_000 })
      // One fiber moves the task running <-> retrying as fast as it can; the other
      // reads it: the last event's status is always the task's status.
      const mover = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
        const [t] = yield* s.claim({ workerId: "w", queues: ["snapshot"], limit: 1, leaseMs: lease })
        if (t !== undefined) yield* s.retry("w", t, boom, 0)
      })))
      for (let i = 0; i < 300; i++) {
        const got = Option.getOrThrow(yield* s.get(id))
        expect(got.events.at(-1)?.to).toBe(got.task.status)
        expect(got.events.at(-1)?.seq).toBe(got.task.revision)
      }
      yield* Fiber.interrupt(mover)
    }))
})
