import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { effectivePriority } from "../../src/domain/Priority.ts"
import type { EnqueueRequest } from "../../src/domain/Task.ts"
import { transaction } from "../../src/store/Transaction.ts"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const Env = PgTaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer()))
const store = TaskStore.TaskStore
const lease = 60_000
const boom = { tag: "Boom", message: "boom", classification: "transient" } as const

/** Claims one task of `queue` for worker `w`. */
const claimOne = (queue: string, workerId = "w") =>
  Effect.flatMap(store, (s) => s.claim({ workerId, queues: [queue], limit: 1, leaseMs: lease })).pipe(
    Effect.map((ts) => ts[0])
  )
/** The same, when the test knows there is one. */
const claimSome = (queue: string, workerId = "w") => Effect.map(claimOne(queue, workerId), (t) => t!)

it.layer(Env, { timeout: 60_000 })("TaskStore", (it) => {
  it.effect("enqueue applies defaults, is idempotent on id and dedupe key, and says which", () =>
    Effect.gen(function*() {
      const s = yield* store
      const a = yield* s.enqueue({ type: "echo", queue: "enq", payload: { n: 1 }, dedupeKey: "order-1" })
      const b = yield* s.enqueue({ type: "echo", queue: "enq", payload: { n: 2 }, dedupeKey: "order-1" })
      const c = yield* s.enqueue({ type: "echo", queue: "enq", id: a.id })
      expect(a.created).toBe(true)
      expect(b).toEqual({ id: a.id, created: false })
      expect(c).toEqual({ id: a.id, created: false })
      const got = yield* s.get(a.id)
      const task = Option.getOrThrow(got).task
      expect(task).toMatchObject({ type: "echo", queue: "enq", payload: { n: 1 }, priority: 0, status: "queued", attempt: 0, maxAttempts: 25 })
      expect(Option.getOrThrow(got).events).toHaveLength(1)
      expect(Option.isNone(yield* s.get(crypto.randomUUID()))).toBe(true)
      expect(Option.isNone(yield* s.get("not-a-uuid"))).toBe(true)
    }))

  it.effect("enqueueMany answers each request in order: a batch of new tasks, and one mixing duplicates", () =>
    Effect.gen(function*() {
      const s = yield* store
      const sql = yield* SqlClient
      const fresh = yield* s.enqueueMany([{ type: "echo", queue: "batch" }, { type: "echo", queue: "batch", id: crypto.randomUUID() }])
      expect(fresh.map((r) => r.created)).toEqual([true, true])
      const stored = yield* sql<{ id: string }>`select id from taskfiber.tasks where queue = 'batch' order by created_at, id`
      expect(new Set(stored.map((r) => r.id))).toEqual(new Set(fresh.map((r) => r.id)))
      // A known id, a new task, the same dedupe key twice in the batch.
      const mixed = yield* s.enqueueMany([
        { type: "echo", queue: "batch", id: fresh[0]!.id },
        { type: "echo", queue: "batch" },
        { type: "echo", queue: "batch", dedupeKey: "twice" },
        { type: "echo", queue: "batch", dedupeKey: "twice" }
      ])
      expect(mixed.map((r) => r.created)).toEqual([false, true, true, false])
      expect(mixed[0]!.id).toBe(fresh[0]!.id)
      expect(mixed[3]!.id).toBe(mixed[2]!.id)
      // The SQL functions: enqueue_quiet says nothing when every request created its
      // own task; enqueue answers one row per request either way.
      const rows = (id: string) => JSON.stringify([{ id, type: "echo", queue: "batch" }])
      const newId = crypto.randomUUID()
      expect(yield* sql`select * from taskfiber.enqueue_quiet(${rows(crypto.randomUUID())}::jsonb)`).toEqual([])
      expect(yield* sql`select * from taskfiber.enqueue_quiet(${rows(newId)}::jsonb)`).toEqual([])
      expect(yield* sql`select * from taskfiber.enqueue_quiet(${rows(newId)}::jsonb)`).toEqual([{ ord: 1, id: newId, created: false }])
      const another = crypto.randomUUID()
      expect(yield* sql`select * from taskfiber.enqueue(${rows(another)}::jsonb)`).toEqual([{ ord: 1, id: another, created: true }])
      expect(yield* sql`select * from taskfiber.enqueue(${rows(another)}::jsonb)`).toEqual([{ ord: 1, id: another, created: false }])
    }))

  it.effect("msUntilNextDue: the next future run_at; with dueWithinMs, tasks that came due that recently too", () =>
    Effect.gen(function*() {
      const s = yield* store
      expect(yield* s.msUntilNextDue({ queues: ["next-due"] })).toEqual(Option.none())
      yield* s.enqueue({ type: "t", queue: "next-due", delayMs: 60_000 })
      const ahead = Option.getOrThrow(yield* s.msUntilNextDue({ queues: ["next-due"] }))
      expect(ahead).toBeGreaterThan(50_000)
      expect(ahead).toBeLessThanOrEqual(60_000)
      // Due for a minute already: not next, unless the caller's window reaches it.
      yield* s.enqueue({ type: "t", queue: "came-due", runAt: new Date(Date.now() - 60_000) })
      expect(yield* s.msUntilNextDue({ queues: ["came-due"] })).toEqual(Option.none())
      expect(yield* s.msUntilNextDue({ queues: ["came-due"], dueWithinMs: 1_000 })).toEqual(Option.none())
      const late = Option.getOrThrow(yield* s.msUntilNextDue({ queues: ["came-due"], dueWithinMs: 600_000 }))
      expect(late).toBeLessThan(-50_000)
      // Only the types asked for: a task of another type is no one's next.
      expect(yield* s.msUntilNextDue({ queues: ["next-due"], types: ["other"] })).toEqual(Option.none())
    }))

  // A payload jsonb cannot store fails the call before anything is sent, naming the
  // request: nothing throws inside the statement's template (BigInt, cycle), and no
  // database error fails the whole statement (U+0000).
  it.effect("a payload jsonb cannot store is an InvalidEnqueueRequest naming the request; nothing is written", () =>
    Effect.gen(function*() {
      const s = yield* store
      for (const payload of [{ n: 1n }, { s: "a\u0000b" }, { s: "\uD800" }]) {
        const bad = yield* Effect.flip(s.enqueueMany([{ type: "ok", queue: "unstorable" }, { type: "x", queue: "unstorable", payload }]))
        expect(bad).toMatchObject({ _tag: "InvalidEnqueueRequest", index: 1, field: "payload" })
      }
      expect((yield* s.list({ queue: "unstorable" })).tasks).toEqual([])
    }))

  it.effect("a bad request fails with InvalidEnqueueRequest naming the field and writes nothing", () =>
    Effect.gen(function*() {
      const s = yield* store
      const bad = yield* Effect.flip(s.enqueueMany([{ type: "ok", queue: "bad" }, { type: "x", queue: "bad", priority: 5000 }]))
      expect(bad._tag).toBe("InvalidEnqueueRequest")
      expect(bad._tag === "InvalidEnqueueRequest" && bad.field).toBe("priority")
      expect(bad._tag === "InvalidEnqueueRequest" && bad.index).toBe(1)
      const noType = yield* Effect.flip(s.enqueue({ queue: "bad" } as unknown as EnqueueRequest.Encoded))
      expect(noType._tag === "InvalidEnqueueRequest" && noType.field).toBe("type")
      const page = yield* s.list({ queue: "bad" })
      expect(page.tasks).toHaveLength(0)
    }))

  it.effect("delayed tasks are not claimed before run_at; claims follow effective priority then run_at", () =>
    Effect.gen(function*() {
      const s = yield* store
      yield* s.enqueue({ type: "t", queue: "prio", priority: 100, delayMs: 3_600_000 })
      const low = yield* s.enqueue({ type: "t", queue: "prio", priority: -5 })
      const high = yield* s.enqueue({ type: "t", queue: "prio", priority: 10 })
      const mid1 = yield* s.enqueue({ type: "t", queue: "prio", priority: 3 })
      const mid2 = yield* s.enqueue({ type: "t", queue: "prio", priority: 3 })
      const order: Array<string> = []
      for (let i = 0; i < 5; i++) {
        const t = yield* claimOne("prio")
        if (t) order.push(t.id)
      }
      expect(order).toEqual([high.id, mid1.id, mid2.id, low.id])
      // One claim of many returns them in that same order.
      const batch = yield* s.enqueueMany([5, -3, 8, 0].map((priority) => ({ type: "t", queue: "prio-batch", priority })))
      const claimed = yield* s.claim({ workerId: "w", queues: ["prio-batch"], limit: 10, leaseMs: lease })
      expect(claimed.map((t) => t.priority)).toEqual([8, 5, 0, -3])
      expect(claimed).toHaveLength(batch.length)
    }))

  it.effect("ageing: a long-waiting low-priority task outranks a fresh high-priority one, as the pure formula says", () =>
    Effect.gen(function*() {
      const s = yield* store
      const sql = yield* SqlClient
      const old = yield* s.enqueue({ type: "t", queue: "ageing", priority: 0 })
      const fresh = yield* s.enqueue({ type: "t", queue: "ageing", priority: 50 })
      // The low task has waited two hours: +120 at the default 1 per 60 s.
      yield* sql`update taskfiber.tasks set run_at = now() - interval '2 hours' where id = ${old.id}::uuid`
      expect(effectivePriority(0, 7200)).toBeGreaterThan(effectivePriority(50, 0))
      const first = yield* claimOne("ageing")
      expect(first?.id).toBe(old.id)
      // Without ageing (a step so long it adds nothing) the fresh one wins.
      const other = yield* s.enqueue({ type: "t", queue: "ageing2", priority: 0 })
      const fresh2 = yield* s.enqueue({ type: "t", queue: "ageing2", priority: 50 })
      yield* sql`update taskfiber.tasks set run_at = now() - interval '2 hours' where id = ${other.id}::uuid`
      const [noAgeing] = yield* s.claim({ workerId: "w", queues: ["ageing2"], limit: 1, leaseMs: lease, ageing: { stepSeconds: 1e9, maxBoost: 1000 } })
      expect(noAgeing?.id).toBe(fresh2.id)
      expect(fresh.id).not.toBe(old.id)
    }))

  it.effect("a claimer still gets work when concurrent claimers hold every top candidate", () =>
    Effect.gen(function*() {
      const s = yield* store
      // claim(limit 1) looks at 1 * 4 + 64 = 68 candidates first.
      yield* s.enqueueMany(Array.from({ length: 70 }, (_, i) => ({ type: "t", queue: "contended", priority: i < 68 ? 5 : 0 })))
      const held = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      const [holder, other] = yield* Effect.all([
        transaction(Effect.gen(function*() {
          const mine = yield* s.claim({ workerId: "holder", queues: ["contended"], limit: 68, leaseMs: lease })
          yield* Deferred.succeed(held, undefined)
          yield* Deferred.await(done) // keep the 68 rows locked until the other claim ran
          return mine
        })),
        Effect.gen(function*() {
          yield* Deferred.await(held)
          const got = yield* s.claim({ workerId: "other", queues: ["contended"], limit: 1, leaseMs: lease })
          yield* Deferred.succeed(done, undefined)
          return got
        })
      ], { concurrency: 2 })
      expect(holder).toHaveLength(68)
      expect(other).toHaveLength(1)
      expect(other[0]?.priority).toBe(0)
      expect(holder.map((t) => t.id)).not.toContain(other[0]?.id)
    }))

  it.effect("retry stores run_at from the database clock; out of attempts it fails and dead-letters", () =>
    Effect.gen(function*() {
      const s = yield* store
      const sql = yield* SqlClient
      const { id } = yield* s.enqueue({ type: "t", queue: "retry", maxAttempts: 2 })
      const first = yield* claimSome("retry")
      const retried = Option.getOrThrow(yield* s.retry("w", first, boom, 5_000))
      expect(retried.status).toBe("retrying")
      const [gap] = yield* sql<{ ms: number }>`
        select extract(epoch from run_at - updated_at)::float8 * 1000 as ms from taskfiber.tasks where id = ${id}::uuid`
      expect(gap?.ms).toBeGreaterThan(4_990)
      expect(gap?.ms).toBeLessThan(5_010)
      expect(yield* claimOne("retry")).toBeUndefined() // not due yet
      yield* sql`update taskfiber.tasks set run_at = now() where id = ${id}::uuid`
      const second = yield* claimSome("retry")
      expect(second.attempt).toBe(2)
      const failed = Option.getOrThrow(yield* s.retry("w", second, boom, 5_000))
      expect(failed.status).toBe("failed")
      const dl = yield* sql<{ source: string; reason: string; attempt: number }>`
        select source, reason, attempt from taskfiber.dead_letters where task_id = ${id}::uuid`
      expect(dl).toEqual([{ source: "task", reason: "boom", attempt: 2 }])
    }))

  it.effect("only the worker holding the lease can settle a task", () =>
    Effect.gen(function*() {
      const s = yield* store
      const { id } = yield* s.enqueue({ type: "t", queue: "owner" })
      const claim = yield* claimSome("owner", "w1")
      expect(yield* s.complete("w2", [{ id, revision: claim.revision, result: 1 }])).toEqual([])
      expect(Option.isNone(yield* s.fail("w2", claim, boom))).toBe(true)
      expect(yield* s.recordProgress("w2", claim, { progress: 1 })).toBe(false)
      expect(yield* s.complete("w1", [{ id, revision: claim.revision, result: { ok: 1 } }])).toEqual([{ id, revision: claim.revision }])
      expect(Option.getOrThrow(yield* s.get(id)).task.result).toEqual({ ok: 1 })
    }))

  it.effect("cancel reports previous statuses and leaves finished tasks alone", () =>
    Effect.gen(function*() {
      const s = yield* store
      const queued = yield* s.enqueue({ type: "t", queue: "cancel" })
      const running = yield* s.enqueue({ type: "t", queue: "cancel", priority: 9 })
      yield* claimOne("cancel")
      const done = yield* s.enqueue({ type: "t", queue: "cancel2" })
      const claim = yield* claimSome("cancel2")
      yield* s.complete("w", [{ id: done.id, revision: claim.revision, result: null }])
      const res = yield* s.cancel([queued.id, running.id, done.id], "user asked")
      expect([...res].sort((a, b) => a.id.localeCompare(b.id))).toEqual(
        [{ id: queued.id, previousStatus: "queued" }, { id: running.id, previousStatus: "running" }]
          .sort((a, b) => a.id.localeCompare(b.id))
      )
      const t = Option.getOrThrow(yield* s.get(running.id)).task
      expect(t.status).toBe("cancelled")
      expect(t.lastError).toEqual({ tag: "TaskCancelled", message: "user asked", classification: "cancelled" })
    }))

  it.effect("release gives the attempt back and keeps the checkpoint; the reaper retries expired leases", () =>
    Effect.gen(function*() {
      const s = yield* store
      const sql = yield* SqlClient
      const { id } = yield* s.enqueue({ type: "t", queue: "release" })
      const first = yield* claimSome("release", "w1")
      expect(yield* s.recordProgress("w1", first, { progress: { pct: 40 }, checkpoint: { page: 4 } })).toBe(true)
      expect(yield* s.release("w1", [first])).toEqual([id])
      let t = Option.getOrThrow(yield* s.get(id)).task
      expect(t).toMatchObject({ status: "queued", attempt: 0, checkpoint: { page: 4 }, progress: { pct: 40 }, leaseExpiresAt: null })
      const second = yield* claimSome("release", "w2")
      expect(yield* s.extendLeases("w2", lease, [second])).toEqual([id])
      expect(yield* s.reapExpired(10)).toEqual([]) // lease still valid
      yield* sql`update taskfiber.tasks set lease_expires_at = clock_timestamp() - interval '1 second' where id = ${id}::uuid`
      const reaped = yield* s.reapExpired(10)
      expect(reaped.map((r) => [r.id, r.status, r.lastError?.tag])).toEqual([[id, "retrying", "LeaseExpired"]])
      t = Option.getOrThrow(yield* s.get(id)).task
      expect(t.checkpoint).toEqual({ page: 4 })
      expect(yield* s.extendLeases("w2", lease, [second])).toEqual([]) // the lease is gone
    }))

  it.effect("list pages with a cursor, filtered by status, queue and type", () =>
    Effect.gen(function*() {
      const s = yield* store
      const made = yield* s.enqueueMany(Array.from({ length: 7 }, (_, i) => ({ type: i % 2 ? "odd" : "even", queue: "list" })))
      const seen: Array<string> = []
      let cursor: string | undefined
      let pages = 0
      do {
        pages++
        const page: TaskStore.TaskPage = yield* s.list({ queue: "list", limit: 3, ...(cursor ? { cursor } : {}) })
        seen.push(...page.tasks.map((t) => t.id))
        cursor = page.nextCursor
      } while (cursor && pages < 10)
      expect(pages).toBe(3)
      // In id order, which for the ids taskfiber makes is the order of creation.
      expect(seen).toEqual(made.map((m) => m.id).sort())
      expect(seen).toEqual([...seen].sort())
      expect((yield* s.list({ queue: "list", type: "odd" })).tasks).toHaveLength(3)
      expect((yield* s.list({ queue: "list", status: "running" })).tasks).toHaveLength(0)
    }))

  it.effect("stats give depth by status and priority and the oldest queued age", () =>
    Effect.gen(function*() {
      const s = yield* store
      yield* s.enqueueMany([{ type: "t", queue: "stats", priority: 1 }, { type: "t", queue: "stats", priority: 1 }, { type: "t", queue: "stats" }])
      const st = yield* s.stats
      expect(st.depth.filter((d) => d.queue === "stats")).toEqual([
        { queue: "stats", status: "queued", priority: 1, count: 2 },
        { queue: "stats", status: "queued", priority: 0, count: 1 }
      ])
      const oldest = st.oldestQueued.find((o) => o.queue === "stats")
      expect(oldest?.ageSeconds).toBeGreaterThanOrEqual(0)
    }))

  it.effect("transactional enqueue: the task exists iff the caller's transaction commits", () =>
    Effect.gen(function*() {
      const s = yield* store
      const rolledBack = yield* Effect.flip(transaction(Effect.gen(function*() {
        const r = yield* s.enqueue({ type: "t", queue: "tx", dedupeKey: "tx-1" })
        return yield* Effect.fail({ _tag: "Oops" as const, id: r.id })
      })))
      expect(rolledBack._tag).toBe("Oops")
      expect((yield* s.list({ queue: "tx" })).tasks).toHaveLength(0)
      const committed = yield* transaction(s.enqueue({ type: "t", queue: "tx", dedupeKey: "tx-1" }))
      expect(committed.created).toBe(true)
      expect((yield* s.list({ queue: "tx" })).tasks.map((t) => t.id)).toEqual([committed.id])
    }))
})
