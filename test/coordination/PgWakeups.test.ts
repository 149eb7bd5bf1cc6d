/**
 * Wake-ups by LISTEN/NOTIFY on a real PostgreSQL: a subscription reports "any
 * queue" when it becomes live, then each notified queue; when its connection is
 * killed, or it dies of a defect, it listens again and reports "any queue" once
 * more (what was sent in between is gone).
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Queue } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as PgWakeups from "../../src/coordination/PgWakeups.ts"
import { Wakeups } from "../../src/coordination/Wakeups.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

/**
 * A subscription whose callback throws at the queue "boom" (its listener dies of
 * a defect); the queues it heard otherwise, once live.
 */
const subscribeDyingOnBoom = Effect.gen(function*() {
  const heard = yield* Queue.unbounded<string | undefined>()
  yield* (yield* Wakeups).subscribe((queue) => {
    if (queue === "boom") throw new Error("a callback that throws")
    Queue.offerUnsafe(heard, queue)
  })
  expect(yield* Queue.take(heard)).toBeUndefined()
  return heard
})

const Env = PgWakeups.layer.pipe(Layer.provideMerge(TestDatabase.layer()))

it.layer(Env, { timeout: 60_000, excludeTestServices: true })("PgWakeups", (it) => {
  it.effect("reports any queue when live, then the notified queues; after a lost connection, any queue again", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const heard = yield* Queue.unbounded<string | undefined>()
      yield* (yield* Wakeups).subscribe((queue) => Queue.offerUnsafe(heard, queue))
      // Live on return: a notification sent now is heard.
      expect(yield* Queue.take(heard)).toBeUndefined()
      yield* sql`select pg_notify(${PgWakeups.channel}, 'emails')`
      expect(yield* Queue.take(heard)).toBe("emails")

      // Kill the listening session: the subscription comes back by itself.
      const killed = yield* sql<{ n: number }>`
        select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
         where datname = current_database() and query ilike 'listen%'`
      expect(killed[0]?.n).toBe(1)
      expect(yield* Queue.take(heard).pipe(Effect.timeout(Duration.seconds(20)))).toBeUndefined()
      yield* sql`select pg_notify(${PgWakeups.channel}, 'reports')`
      expect(yield* Queue.take(heard)).toBe("reports")
    }).pipe(Effect.scoped))

  it.effect("a listener that dies of a defect (a throwing callback) listens again", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const heard = yield* subscribeDyingOnBoom
      yield* sql`select pg_notify(${PgWakeups.channel}, 'boom')`
      expect(yield* Queue.take(heard).pipe(Effect.timeout(Duration.seconds(20)))).toBeUndefined()
      yield* sql`select pg_notify(${PgWakeups.channel}, 'after')`
      expect(yield* Queue.take(heard)).toBe("after")
    }).pipe(Effect.scoped))

  // The pause before listening again grows while LISTEN keeps failing, and starts
  // over once it worked: a listener lost eight times in a row, each time after it
  // was live, comes back each time at the shortest pause (100 ms), not after the
  // growing one of a single long outage (which by the sixth loss is 3.2 s).
  it.effect("after each loss of a listener that was live, it listens again at the shortest pause", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const heard = yield* subscribeDyingOnBoom
      for (let loss = 1; loss <= 8; loss++) {
        yield* sql`select pg_notify(${PgWakeups.channel}, 'boom')`
        expect(yield* Queue.take(heard).pipe(Effect.timeout(Duration.seconds(2)))).toBeUndefined()
      }
    }).pipe(Effect.scoped))
})
