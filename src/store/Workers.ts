/**
 * `Workers`: which queues and task types each running instance serves
 * (`taskfiber.workers`; schema/functions/workers.sql). A supervisor says so when it starts and every
 * {@link renewEveryMs}, and removes itself when it stops; the database clock stamps
 * when it was last seen. Tasks that no live worker serves — a queue nobody runs, a type
 * no deployed worker knows — would otherwise wait in silence: `unserved` finds them,
 * and the supervisor and `taskfiber status` say so.
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { DatabaseError } from "./DatabaseError.ts"
import { mapSqlError } from "./DatabaseError.ts"

/** How often a running supervisor says it is alive (`seen`). */
export const renewEveryMs = 10_000

/** A worker seen within this window counts as live: three renewals may be missed. */
export const liveWithinMs = 30_000

/** A worker as last seen. */
export interface WorkerInfo {
  readonly id: string
  readonly queues: ReadonlyArray<string>
  readonly types: ReadonlyArray<string>
  readonly startedAt: Date
  readonly seenAt: Date
}

/** Due tasks of one queue and type that no live worker serves. */
export interface UnservedTasks {
  readonly queue: string
  readonly type: string
  readonly count: number
  /** Seconds the oldest of them has been due. */
  readonly waitingSeconds: number
}

/** The registry of workers (see module doc). */
export class Workers extends Context.Service<Workers, {
  /** Records that `worker` is alive and serves these queues and types. */
  readonly seen: (worker: { readonly id: string; readonly queues: ReadonlyArray<string>; readonly types: ReadonlyArray<string> }) => Effect.Effect<void, DatabaseError>
  /** Removes a stopped worker. */
  readonly stopped: (id: string) => Effect.Effect<void, DatabaseError>
  /** Workers seen within the last `seenWithinMs`. */
  readonly live: (seenWithinMs: number) => Effect.Effect<ReadonlyArray<WorkerInfo>, DatabaseError>
  /** Due tasks no worker seen within `seenWithinMs` serves, by queue and type, longest waiting first. */
  readonly unserved: (seenWithinMs: number) => Effect.Effect<ReadonlyArray<UnservedTasks>, DatabaseError>
}>()("taskfiber/Workers") {}

const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  return Workers.of({
    seen: (w) =>
      sql`select taskfiber.worker_seen(${w.id}, ${[...w.queues]}::text[], ${[...w.types]}::text[])`.pipe(
        Effect.asVoid,
        mapSqlError,
        Effect.withSpan("Workers.seen")
      ),
    stopped: (id) =>
      sql`delete from taskfiber.workers where id = ${id}`.pipe(Effect.asVoid, mapSqlError, Effect.withSpan("Workers.stopped")),
    live: (seenWithinMs) =>
      sql<{ id: string; queues: Array<string>; types: Array<string>; started_at: Date; seen_at: Date }>`
        select id, queues, types, started_at, seen_at from taskfiber.workers
         where seen_at > clock_timestamp() - ${Math.max(0, Math.round(seenWithinMs))}::bigint * interval '1 millisecond'
         order by id`.pipe(
        Effect.map((rows) =>
          rows.map((r) => ({ id: r.id, queues: r.queues, types: r.types, startedAt: r.started_at, seenAt: r.seen_at }))
        ),
        mapSqlError,
        Effect.withSpan("Workers.live")
      ),
    unserved: (seenWithinMs) =>
      sql<{ queue: string; type: string; count: number; waiting_seconds: number }>`
        select queue, type, count::int as count,
               greatest(0, extract(epoch from now() - oldest_run_at))::float8 as waiting_seconds
          from taskfiber.unserved_tasks(${Math.max(0, Math.round(seenWithinMs))})`.pipe(
        Effect.map((rows) => rows.map((r) => ({ queue: r.queue, type: r.type, count: r.count, waitingSeconds: r.waiting_seconds }))),
        mapSqlError,
        Effect.withSpan("Workers.unserved")
      )
  })
})

/** The PostgreSQL registry of workers. */
export const layer: Layer.Layer<Workers, never, SqlClient> = Layer.effect(Workers, make)
