/**
 * Scoped transactions over effect/sql: isolation level, a statement timeout that
 * ends with the transaction (`SET LOCAL`), and a retry by `Schedule` of the two
 * failures that a retry cures — serialization failure (40001) and deadlock (40P01).
 *
 * Nested calls run as savepoints inside the outer transaction (effect/sql's
 * behaviour); they never retry on their own, because a serialization failure or a
 * deadlock aborts the whole outer transaction: only the outermost call retries,
 * and it re-runs the whole program, nested parts included.
 */
import { Duration, Effect, Option, Schedule } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { DatabaseError, fromUnknown, mapSqlError } from "./DatabaseError.ts"

/** Transaction isolation levels of PostgreSQL. */
export type IsolationLevel = "read committed" | "repeatable read" | "serializable"

/** Options of {@link transaction}. */
export interface TransactionOptions {
  /** Default: the server's (read committed). Ignored by a nested call. */
  readonly isolation?: IsolationLevel
  /** `SET LOCAL statement_timeout`: from here to the end of the outer transaction. */
  readonly statementTimeout?: Duration.Input
  /** Retries of the whole transaction after 40001/40P01; false: none. */
  readonly retry?: Schedule.Schedule<unknown, unknown> | false
}

/** 5 retries, 10 ms doubling, jittered: contention clears fast or not at all. */
export const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("10 millis").pipe(
  Schedule.jittered,
  Schedule.upTo({ times: 5 })
) as Schedule.Schedule<unknown, unknown>

/** Whether an error is a serialization failure or a deadlock (pure). */
export const isRetryableConflict = (error: unknown): boolean => {
  const e = fromUnknown(error)
  return e !== undefined && (e.category === "serialization" || e.category === "deadlock")
}

const isolationSql: Record<IsolationLevel, string> = {
  "read committed": "set transaction isolation level read committed",
  "repeatable read": "set transaction isolation level repeatable read",
  serializable: "set transaction isolation level serializable"
}

/**
 * `statement_timeout` in whole milliseconds. PostgreSQL takes 1 … 2^31-1 and reads 0
 * as "none", so an infinite duration disables the timeout and a longer one is capped
 * (both would otherwise fail the transaction with 22023 before it starts).
 */
const timeoutSetting = (input: Duration.Input): string => {
  const ms = Duration.toMillis(Duration.fromInputUnsafe(input))
  return Number.isFinite(ms) ? String(Math.min(2_147_483_647, Math.max(1, Math.round(ms)))) : "0"
}

/**
 * Runs `effect` in a transaction: committed when it succeeds, rolled back when it
 * fails or is interrupted. `SqlError`s come out as classified `DatabaseError`s.
 */
export const transaction = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: TransactionOptions = {}
): Effect.Effect<A, Exclude<E, SqlError> | DatabaseError, R | SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const outer = Option.isNone(yield* Effect.serviceOption(sql.transactionService))
    const body = Effect.gen(function*() {
      if (outer && options.isolation) yield* sql.unsafe(isolationSql[options.isolation])
      if (options.statementTimeout !== undefined) {
        yield* sql`select set_config('statement_timeout', ${timeoutSetting(options.statementTimeout)}, true)`
      }
      return yield* effect
    })
    const run = sql.withTransaction(body)
    const schedule = options.retry ?? defaultRetry
    return yield* outer && schedule !== false
      ? Effect.retry(run, { schedule, while: isRetryableConflict })
      : run
  }).pipe(mapSqlError) as Effect.Effect<A, Exclude<E, SqlError> | DatabaseError, R | SqlClient>

/** Re-exported for callers that inspect raw effect/sql failures. */
export { isSqlError }
