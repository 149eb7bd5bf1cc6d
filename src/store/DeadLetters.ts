/**
 * `DeadLetters`: input that never became a task, kept as it came with why
 * (`taskfiber.dead_letters`; schema/functions/dead_letters.sql). The dead letters
 * of failed tasks are written by the tasks' own trigger (history.sql); this store
 * records the others — an undecodable Kafka message: its raw bytes, its headers,
 * where it came from, and the reason, so that nothing that arrived is ever lost.
 *
 * Recording is idempotent on the message (topic, partition, offset, timestamp): a
 * message delivered again after a crash between the batch's commit and its offset
 * commit finds its letter and writes no second one.
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { DatabaseError } from "./DatabaseError.ts"
import { mapSqlError } from "./DatabaseError.ts"

/** One dead letter of input that made no task. */
export interface DeadLetterInput {
  /** Where it came from: "kafka", … */
  readonly source: string
  /** The task id it named, when it named a valid one. */
  readonly taskId?: string
  /** The task type it named, if any. */
  readonly type?: string
  /** One line: why it made no task. */
  readonly reason: string
  /** Structured detail of the reason (JSON). */
  readonly error?: unknown
  /** The bytes as received (a Kafka message's value). */
  readonly raw?: Uint8Array | null
  readonly headers?: Readonly<Record<string, string | ReadonlyArray<string>>>
  readonly topic?: string
  readonly partition?: number
  /** The message's offset (int64 as text). */
  readonly offset?: string
  /** The message's timestamp (ms as text): with the offset, its identity (a topic made again starts its offsets over). */
  readonly timestamp?: string
}

/** The dead-letter store (see module doc). */
export class DeadLetters extends Context.Service<DeadLetters, {
  /** Records `letters` in one statement; returns how many were new (redeliveries are skipped). */
  readonly record: (letters: ReadonlyArray<DeadLetterInput>) => Effect.Effect<number, DatabaseError>
}>()("taskfiber/DeadLetters") {}

/** The JSON the SQL function reads. */
const row = (l: DeadLetterInput) => ({
  source: l.source,
  task_id: l.taskId ?? null,
  type: l.type ?? null,
  reason: l.reason,
  error: l.error ?? null,
  raw: l.raw === undefined || l.raw === null ? null : Buffer.from(l.raw).toString("base64"),
  headers: l.headers ?? null,
  topic: l.topic ?? null,
  partition: l.partition ?? null,
  offset: l.offset ?? null,
  timestamp: l.timestamp ?? null
})

/** The PostgreSQL store, on the application's SqlClient (inside a caller's transaction when there is one). */
export const layer: Layer.Layer<DeadLetters, never, SqlClient> = Layer.effect(
  DeadLetters,
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return DeadLetters.of({
      record: (letters) =>
        letters.length === 0
          ? Effect.succeed(0)
          : sql<{ n: number }>`select taskfiber.record_dead_letters(${JSON.stringify(letters.map(row))}::jsonb) as n`.pipe(
            Effect.map((rows) => rows[0]?.n ?? 0),
            mapSqlError,
            Effect.withSpan("DeadLetters.record", { attributes: { "taskfiber.count": letters.length } })
          )
    })
  })
)
