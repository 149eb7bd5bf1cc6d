/**
 * Warms every kept connection of the pool: before the layer is handed out, or,
 * with `warmUp: "when-idle"`, when a supervisor first finds nothing to do (the
 * layer provides it as the runtime's IdleWork).
 *
 * PostgreSQL compiles a PL/pgSQL function, and plans its statements and those of
 * the triggers it fires, once per session, on the first call: the first enqueue on
 * a new connection took 9.8 ms and the first claim 8.4 ms, against about 1 ms
 * afterwards (PostgreSQL 15, measured). A pool that opened connections on demand
 * put that cost into whichever task met a new connection: it was the whole tail of
 * the pickup latency. So the pool keeps its connections open (see Database), and
 * each one runs the hot path once here: enqueue, claim and complete a task of a
 * private queue, in a transaction that is rolled back.
 *
 * Crash at any point: the transaction never commits, so no task, event, outbox row
 * or notification exists; nothing to clean up. A warm-up that fails (a connection
 * refused, a statement timing out) is logged and skipped: a cold connection is
 * only slower, never wrong.
 */
import { Data, Effect, Latch } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { fromUnknown } from "./DatabaseError.ts"

/** The queue of the warm-up tasks; never committed, so never seen by a claim. */
export const warmupQueue = "taskfiber.warm-up"

class RolledBack extends Data.TaggedError("RolledBack")<{}> {}

/**
 * Runs the hot path once on each of `connections` pool connections, leaving
 * nothing behind. 0: nothing. Concurrent transactions hold distinct connections
 * only while they overlap: one that ended before the last began handed its
 * connection on, and the pool (which keeps connections, but does not open them
 * to reach its minimum) stayed one short, its first task meeting a cold one (seen
 * under load: 2 of 3). So each warm-up holds its transaction until all have run
 * (or failed), at most a second.
 */
export const warmConnections = (connections: number): Effect.Effect<void, never, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const allRan = yield* Latch.make()
    let ran = 0
    const arrive = Effect.suspend(() => (++ran >= connections ? allRan.open : Effect.void))
    const once = sql.withTransaction(Effect.gen(function*() {
      const worker = `warm-up-${crypto.randomUUID()}`
      const requests = JSON.stringify([{ id: crypto.randomUUID(), queue: warmupQueue, type: warmupQueue }])
      yield* sql`select count(*) from taskfiber.enqueue_quiet(${requests}::jsonb)`
      const claimed = yield* sql<{ id: string; revision: number }>`
        select id, revision from taskfiber.claim(${worker}, array[${warmupQueue}]::text[], 1, 60000, 60, 0, true)`
      const items = JSON.stringify(claimed.map((t) => ({ id: t.id, revision: t.revision, result: null })))
      yield* sql`select count(*) from taskfiber.complete_tasks(${worker}, ${items}::jsonb)`
      yield* arrive
      yield* Effect.timeoutOption(allRan.await, "1 second")
      return yield* new RolledBack()
    }))
    yield* Effect.forEach(
      Array.from({ length: connections }),
      () =>
        once.pipe(
          Effect.catchTag("RolledBack", () => Effect.void),
          Effect.catch((error) =>
            Effect.andThen(
              arrive,
              Effect.logWarning("connection warm-up failed; it stays cold", { error: (fromUnknown(error) ?? error).message })
            )
          )
        ),
      { concurrency: "unbounded", discard: true }
    )
  }).pipe(Effect.withSpan("Database.warmConnections", { attributes: { connections } }))
