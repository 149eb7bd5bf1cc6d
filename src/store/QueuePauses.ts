/**
 * `QueuePauses`: pausing and resuming a queue (`taskfiber.paused_queues`;
 * schema/functions/queues.sql). A paused queue's tasks are not claimed: they wait as
 * they are, queued or retrying, and enqueues into the queue still succeed; tasks
 * already running in it finish as usual; other queues flow. Resuming wakes the
 * dispatchers serving the queue (the enqueue's notification), so its due tasks are
 * claimed at once.
 *
 * The pause is the database's, so it holds for every instance, for workers started
 * later, and across restarts, until a resume. Both operations are idempotent and say
 * whether they changed anything.
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { DatabaseError } from "./DatabaseError.ts"
import { mapSqlError } from "./DatabaseError.ts"

/** A paused queue, as `paused` lists it. */
export interface PausedQueue {
  readonly queue: string
  /** When it was paused, by the database clock (the first pause, if it was paused again). */
  readonly pausedAt: Date
  readonly reason: string | undefined
}

/** The queue pauses (see module doc). */
export class QueuePauses extends Context.Service<QueuePauses, {
  /**
   * Pauses `queue` (one that holds no task yet too); true if it was not paused. A
   * queue paused already keeps its first pause's time and reason.
   */
  readonly pause: (queue: string, reason?: string) => Effect.Effect<boolean, DatabaseError>
  /** Resumes `queue` and wakes its dispatchers; true if it was paused. */
  readonly resume: (queue: string) => Effect.Effect<boolean, DatabaseError>
  /** The paused queues, by name. */
  readonly paused: Effect.Effect<ReadonlyArray<PausedQueue>, DatabaseError>
}>()("taskfiber/QueuePauses") {}

/** The PostgreSQL store, on the application's SqlClient (inside a caller's transaction when there is one). */
export const layer: Layer.Layer<QueuePauses, never, SqlClient> = Layer.effect(
  QueuePauses,
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return QueuePauses.of({
      pause: (queue, reason) =>
        sql<{ changed: boolean }>`select taskfiber.pause_queue(${queue}, ${reason ?? null}::text) as changed`.pipe(
          Effect.map((rows) => rows[0]?.changed === true),
          mapSqlError,
          Effect.withSpan("QueuePauses.pause", { attributes: { "taskfiber.queue": queue } })
        ),
      resume: (queue) =>
        sql<{ changed: boolean }>`select taskfiber.resume_queue(${queue}) as changed`.pipe(
          Effect.map((rows) => rows[0]?.changed === true),
          mapSqlError,
          Effect.withSpan("QueuePauses.resume", { attributes: { "taskfiber.queue": queue } })
        ),
      paused: sql<{ queue: string; paused_at: Date; reason: string | null }>`
        select queue, paused_at, reason from taskfiber.paused_queues order by queue`.pipe(
        Effect.map((rows) => rows.map((r) => ({ queue: r.queue, pausedAt: r.paused_at, reason: r.reason ?? undefined }))),
        mapSqlError,
        Effect.withSpan("QueuePauses.paused")
      )
    })
  })
)
