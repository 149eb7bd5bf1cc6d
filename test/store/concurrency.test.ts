/**
 * Races on a real PostgreSQL: many connections at once, started together from a
 * barrier (each fiber holds an open transaction on its own connection first), so
 * the statements really overlap.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Ref } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { transaction } from "../../src/store/Transaction.ts"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const Env = PgTaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer({ poolMax: 24 })))

/**
 * Runs `n` copies of `body`, each in its own transaction, all released at once
 * when every one of them holds its connection.
 */
const together = <A, E, R>(n: number, body: (i: number) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const ready = yield* Ref.make(0)
    const go = yield* Deferred.make<void>()
    return yield* Effect.all(
      Array.from({ length: n }, (_, i) =>
        transaction(Effect.gen(function*() {
          yield* sql`select 1` // BEGIN has been sent and this connection is ours
          const count = yield* Ref.updateAndGet(ready, (c) => c + 1)
          if (count === n) yield* Deferred.succeed(go, undefined)
          yield* Deferred.await(go)
          return yield* body(i)
        }), { retry: false })),
      { concurrency: "unbounded" }
    )
  })

it.layer(Env, { timeout: 120_000 })("concurrency", (it) => {
  it.effect("20 concurrent duplicate enqueues (same id) make one row, and exactly one says created", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const sql = yield* SqlClient
      const id = crypto.randomUUID()
      const results = yield* together(20, () => s.enqueue({ id, type: "dup", queue: "dup-id" }))
      expect(results.filter((r) => r.created)).toHaveLength(1)
      expect(new Set(results.map((r) => r.id))).toEqual(new Set([id]))
      const [row] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where queue = 'dup-id'`
      expect(row?.n).toBe(1)
    }))

  it.effect("20 concurrent duplicate enqueues (same dedupe key, different ids) make one row", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const sql = yield* SqlClient
      const results = yield* together(20, (i) =>
        s.enqueue({ type: "dup", queue: "dup-key", dedupeKey: "invoice-42", payload: { i } }))
      expect(results.filter((r) => r.created)).toHaveLength(1)
      const winner = results.find((r) => r.created)?.id
      expect(results.every((r) => r.id === winner)).toBe(true)
      const rows = yield* sql<{ id: string }>`select id from taskfiber.tasks where queue = 'dup-key'`
      expect(rows.map((r) => r.id)).toEqual([winner])
    }))

  it.effect("10 concurrent claimers over 1,000 tasks never claim one task twice", () =>
    Effect.gen(function*() {
      const s = yield* TaskStore.TaskStore
      const sql = yield* SqlClient
      yield* s.enqueueMany(Array.from({ length: 1000 }, (_, i) => ({ type: "work", queue: "claim-race", payload: { i } })))
      const claimer = (w: number) =>
        Effect.gen(function*() {
          const mine: Array<string> = []
          while (true) {
            const batch = yield* s.claim({ workerId: `w${w}`, queues: ["claim-race"], limit: 7, leaseMs: 60_000 })
            if (batch.length === 0) return mine
            mine.push(...batch.map((t) => t.id))
          }
        })
      const perWorker = yield* Effect.all(Array.from({ length: 10 }, (_, w) => claimer(w)), { concurrency: 10 })
      const all = perWorker.flat()
      expect(all).toHaveLength(1000)
      expect(new Set(all).size).toBe(1000)
      // More than one claimer did real work: the race was real.
      expect(perWorker.filter((ids) => ids.length > 0).length).toBeGreaterThan(1)
      const [row] = yield* sql<{ running: number; attempts: number; events: number }>`
        select count(*) filter (where status = 'running')::int as running,
               sum(attempt)::int as attempts,
               (select count(*)::int from taskfiber.task_events e join taskfiber.tasks t on t.id = e.task_id
                 where t.queue = 'claim-race' and e.to_status = 'running') as events
        from taskfiber.tasks where queue = 'claim-race'`
      expect(row).toEqual({ running: 1000, attempts: 1000, events: 1000 })
    }))
})
