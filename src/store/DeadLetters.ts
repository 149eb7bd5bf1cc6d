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
 *
 * The reads are the operator's (src/admin/Admin.ts): pages of every letter, newest
 * first, and the walk of the failed tasks' letters that a replay of them all has
 * left to do. Pages follow (created_at, id), whose cursor keeps the microseconds
 * (a Date would drop them, and a letter at the page's edge with them).
 */
import { Context, Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { DatabaseError } from "./DatabaseError.ts"
import { mapSqlError } from "./DatabaseError.ts"
import * as Cursor from "./Cursor.ts"
import { isUuid } from "../domain/Task.ts"

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

/** One stored dead letter: a failed task's (`source` "task") or input's that made no task. */
export interface DeadLetter {
  readonly id: string
  /** "task" for a failed task; where the input came from otherwise ("kafka", …). */
  readonly source: string
  /** The failed task, or the task id the input named; null when none. */
  readonly taskId: string | null
  readonly queue: string | null
  readonly type: string | null
  /** One line: why. */
  readonly reason: string
  /** Structured detail: a failed task's last error, a decode failure's issues. */
  readonly error: unknown
  /** A failed task's last attempt. */
  readonly attempt: number | null
  /** When it was written (database clock). */
  readonly createdAt: Date
  /** When the failed task behind it was replayed; null while it was not. */
  readonly replayedAt: Date | null
  /** Where an undecodable Kafka message came from; null for the others. */
  readonly kafka: { readonly topic: string; readonly partition: number | null; readonly offset: string | null } | null
}

/** Filter and page of {@link DeadLetters.list}. */
export interface DeadLetterListOptions {
  readonly type?: string | undefined
  readonly source?: string | undefined
  /** 1–500, default 50. */
  readonly limit?: number | undefined
  /** `nextCursor` of the previous page. */
  readonly cursor?: string | undefined
}

/** One page of dead letters, newest first. */
export interface DeadLetterPage {
  readonly letters: ReadonlyArray<DeadLetter>
  /** Absent on the last page. */
  readonly nextCursor?: string
}

/** A failed task's letter not yet replayed, with its place in the walk. */
export interface UnreplayedLetter {
  readonly letterId: string
  readonly taskId: string
  readonly key: UnreplayedKey
}

/** A place in the walk of {@link DeadLetters.unreplayed}: (type, created_at in µs, id). */
export interface UnreplayedKey {
  readonly type: string
  readonly createdAtMicros: string
  readonly id: string
}

/** The dead-letter store (see module doc). */
export class DeadLetters extends Context.Service<DeadLetters, {
  /** Records `letters` in one statement; returns how many were new (redeliveries are skipped). */
  readonly record: (letters: ReadonlyArray<DeadLetterInput>) => Effect.Effect<number, DatabaseError>
  /**
   * A page of letters, newest first: through dead_letters_type_idx with a type,
   * dead_letters_created_idx without (a source alone filters that walk: there are
   * a handful of sources).
   */
  readonly list: (options?: DeadLetterListOptions) => Effect.Effect<DeadLetterPage, DatabaseError | Cursor.InvalidCursor>
  readonly get: (id: string) => Effect.Effect<Option.Option<DeadLetter>, DatabaseError>
  /**
   * How many failed tasks' letters (of `type`, when given) are not yet replayed,
   * and the database's time now in µs: the bound `unreplayed` takes, so that a walk replays only the failures that were there when it began.
   */
  readonly countUnreplayed: (type?: string) => Effect.Effect<{ readonly count: number; readonly upToMicros: string }, DatabaseError>
  /**
   * The next `limit` failed tasks' letters not yet replayed, written up to
   * `upToMicros`, after `after`, in (type, created_at, id) order: one range of
   * dead_letters_unreplayed_idx.
   */
  readonly unreplayed: (options: {
    readonly type?: string | undefined
    readonly upToMicros: string
    readonly after?: UnreplayedKey | undefined
    readonly limit: number
  }) => Effect.Effect<ReadonlyArray<UnreplayedLetter>, DatabaseError>
}>()("taskfiber/DeadLetters") {}

/** A row as the client returns it. */
interface DeadLetterRow {
  readonly id: string
  readonly source: string
  readonly task_id: string | null
  readonly queue: string | null
  readonly type: string | null
  readonly reason: string
  readonly error: unknown
  readonly attempt: number | null
  readonly created_at: Date
  readonly replayed_at: Date | null
  readonly topic: string | null
  readonly kafka_partition: number | null
  readonly kafka_offset: string | null
  readonly created_us: string
}

const toDeadLetter = (r: DeadLetterRow): DeadLetter => ({
  id: r.id,
  source: r.source,
  taskId: r.task_id,
  queue: r.queue,
  type: r.type,
  reason: r.reason,
  error: r.error,
  attempt: r.attempt,
  createdAt: r.created_at,
  replayedAt: r.replayed_at,
  kafka: r.topic === null ? null : { topic: r.topic, partition: r.kafka_partition, offset: r.kafka_offset }
})

// The cursor is the last letter's (created_at in µs, id). Sixteen digits reach
// the year 2286; more would overflow the timestamp in SQL, not be refused here.
const isLetterKey = (v: unknown): v is readonly [string, string] =>
  Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && /^\d{1,16}$/.test(v[0]) && isUuid(v[1])

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
    const columns = sql.literal(`id, source, task_id, queue, type, reason, error, attempt, created_at, replayed_at,
      topic, kafka_partition, kafka_offset::text as kafka_offset,
      (extract(epoch from created_at) * 1000000)::bigint::text as created_us`)
    const micros = (us: string) => sql`(timestamptz 'epoch' + ${us}::bigint * interval '1 microsecond')`
    return DeadLetters.of({
      record: (letters) =>
        letters.length === 0
          ? Effect.succeed(0)
          : sql<{ n: number }>`select taskfiber.record_dead_letters(${JSON.stringify(letters.map(row))}::jsonb) as n`.pipe(
            Effect.map((rows) => rows[0]?.n ?? 0),
            mapSqlError,
            Effect.withSpan("DeadLetters.record", { attributes: { "taskfiber.count": letters.length } })
          ),

      // The filters are left out, not written `$1 is null or …`: a plan the
      // driver prepares once would then serve every filter, and could use no index.
      list: (options = {}) =>
        Effect.gen(function*() {
          const limit = Math.min(500, Math.max(1, Math.floor(options.limit ?? 50)))
          const after = yield* Cursor.decode(options.cursor, isLetterKey)
          const where = [
            ...(options.type === undefined ? [] : [sql`type = ${options.type}`]),
            ...(options.source === undefined ? [] : [sql`source = ${options.source}`]),
            ...(after === undefined ? [] : [sql`(created_at, id) < (${micros(after[0])}, ${after[1]}::uuid)`])
          ]
          const rows = yield* sql<DeadLetterRow>`
            select ${columns} from taskfiber.dead_letters
             where ${where.length === 0 ? sql.literal("true") : sql.and(where)}
             order by created_at desc, id desc
             limit ${limit + 1}`
          const page = rows.slice(0, limit)
          const last = page[page.length - 1]
          return rows.length > limit && last !== undefined
            ? { letters: page.map(toDeadLetter), nextCursor: Cursor.encode([last.created_us, last.id]) }
            : { letters: page.map(toDeadLetter) }
        }).pipe(mapSqlError, Effect.withSpan("DeadLetters.list")),

      get: (id) =>
        !isUuid(id)
          ? Effect.succeed(Option.none())
          : sql<DeadLetterRow>`select ${columns} from taskfiber.dead_letters where id = ${id}::uuid`.pipe(
            Effect.map((rows) => Option.map(Option.fromNullishOr(rows[0]), toDeadLetter)),
            mapSqlError,
            Effect.withSpan("DeadLetters.get")
          ),

      countUnreplayed: (type) =>
        sql<{ count: number; now_us: string }>`
          select (select count(*) from taskfiber.dead_letters
                   where source = 'task' and replayed_at is null ${type === undefined ? sql.literal("") : sql`and type = ${type}`})::int as count,
                 (extract(epoch from clock_timestamp()) * 1000000)::bigint::text as now_us`.pipe(
          Effect.map((rows) => ({ count: rows[0]?.count ?? 0, upToMicros: rows[0]?.now_us ?? "0" })),
          mapSqlError,
          Effect.withSpan("DeadLetters.countUnreplayed")
        ),

      unreplayed: (options) =>
        sql<{ id: string; task_id: string; type: string; created_us: string }>`
          select id, task_id, type, (extract(epoch from created_at) * 1000000)::bigint::text as created_us
            from taskfiber.dead_letters
           where source = 'task' and replayed_at is null and task_id is not null
             and created_at <= ${micros(options.upToMicros)}
             ${options.type === undefined ? sql.literal("") : sql`and type = ${options.type}`}
             ${options.after === undefined ? sql.literal("") : sql`and (type, created_at, id) > (${options.after.type}, ${micros(options.after.createdAtMicros)}, ${options.after.id}::uuid)`}
           order by type, created_at, id
           limit ${Math.max(1, Math.floor(options.limit))}`.pipe(
          Effect.map((rows) => rows.map((r) => ({ letterId: r.id, taskId: r.task_id, key: { type: r.type, createdAtMicros: r.created_us, id: r.id } }))),
          mapSqlError,
          Effect.withSpan("DeadLetters.unreplayed")
        )
    })
  })
)
