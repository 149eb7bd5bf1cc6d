/**
 * `DatabaseError`: what went wrong in PostgreSQL, for people and for policies.
 *
 * effect/sql's `SqlError` already classifies the failure (`reason`: UniqueViolation,
 * DeadlockError, …) and carries the server's fields (SQLSTATE `code`, `table`,
 * `constraint`, `column`, `detail`) in `reason.cause`. This adds what it lacks: one
 * category per SQLSTATE class, a message that names the constraint or column, and a
 * recommended recovery. `retryable` feeds the task error classifier.
 */
import { Data, Effect } from "effect"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { redactSecrets } from "../domain/Redact.ts"

/** What kind of failure, by SQLSTATE class. */
export type DatabaseErrorCategory =
  | "constraint" //    23xxx, TF001 (the task state machine), TF002 (append-only history)
  | "data" //          22xxx: a value PostgreSQL cannot take (bad uuid, overflow)
  | "serialization" // 40001
  | "deadlock" //      40P01
  | "connection" //    08xxx, 57P0x, 53xxx, sockets
  | "timeout" //       57014 statement timeout or cancel, 55P03 lock timeout
  | "permission" //    42501, 28xxx
  | "query" //         other 42xxx: the statement itself is wrong
  | "unknown"

/** Which constraint, when the category is `constraint`. */
export type ConstraintKind =
  | "not_null"
  | "foreign_key"
  | "unique"
  | "check"
  | "exclusion"
  | "state_machine"
  | "append_only"
  | "other"

/** What a caller (or operator) should do about it. */
export type Recovery = "retry" | "fix_data" | "check_network" | "check_permissions" | "contact_admin"

/** A failed database operation, classified. */
export class DatabaseError extends Data.TaggedError("DatabaseError")<{
  readonly category: DatabaseErrorCategory
  readonly constraintKind?: ConstraintKind | undefined
  /** SQLSTATE, when the server sent one. */
  readonly sqlstate?: string | undefined
  readonly table?: string | undefined
  readonly column?: string | undefined
  readonly constraint?: string | undefined
  /** A sentence naming what failed; secrets redacted. */
  readonly message: string
  readonly recovery: Recovery
  /** Whether running the same operation again may succeed. */
  readonly retryable: boolean
  readonly cause?: unknown
}> {}

interface ServerFields {
  readonly code?: string
  readonly message?: string
  readonly detail?: string
  readonly table?: string
  readonly column?: string
  readonly constraint?: string
}

const serverFields = (error: SqlError): ServerFields => {
  const cause: unknown = (error.reason as { readonly cause?: unknown }).cause
  if (typeof cause !== "object" || cause === null) return {}
  const c = cause as Record<string, unknown>
  const str = (k: string) => (typeof c[k] === "string" ? (c[k] as string) : undefined)
  const fields: Record<string, string> = {}
  for (const k of ["code", "message", "detail", "table", "column", "constraint"]) {
    const v = str(k)
    if (v !== undefined) fields[k] = v
  }
  // A socket failure's cause is a Node system error whose `code` is ECONNREFUSED,
  // EPIPE, …: not a SQLSTATE, so it must not be reported (or classified) as one.
  const nodeError = typeof c.errno === "number" || typeof c.syscall === "string"
  if (fields.code !== undefined && (nodeError || !sqlstatePattern.test(fields.code))) delete fields.code
  return fields
}

/** Five digits or upper-case letters: the shape of a SQLSTATE (TF001 included). */
const sqlstatePattern = /^[0-9A-Z]{5}$/

const constraintKinds: Record<string, ConstraintKind> = {
  "23502": "not_null",
  "23503": "foreign_key",
  "23505": "unique",
  "23514": "check",
  "23P01": "exclusion",
  TF001: "state_machine",
  TF002: "append_only"
}

interface Classified {
  readonly category: DatabaseErrorCategory
  readonly recovery: Recovery
  readonly retryable: boolean
}

/** The category, recovery and retryability of a SQLSTATE (pure). */
export const classifySqlstate = (code: string | undefined, reasonTag?: string): Classified => {
  if (code !== undefined) {
    if (Object.hasOwn(constraintKinds, code) || code.startsWith("23")) {
      return { category: "constraint", recovery: "fix_data", retryable: false }
    }
    // 40003: the server cannot say whether the statement committed; a blind retry
    // could apply it twice.
    if (code === "40003") return { category: "unknown", recovery: "contact_admin", retryable: false }
    if (code === "40001") return { category: "serialization", recovery: "retry", retryable: true }
    if (code === "40P01") return { category: "deadlock", recovery: "retry", retryable: true }
    if (code === "57014" || code === "55P03") return { category: "timeout", recovery: "retry", retryable: true }
    if (code.startsWith("08") || code.startsWith("57P") || code.startsWith("53")) {
      return { category: "connection", recovery: "check_network", retryable: true }
    }
    if (code === "42501" || code.startsWith("28")) {
      return { category: "permission", recovery: "check_permissions", retryable: false }
    }
    if (code.startsWith("42")) return { category: "query", recovery: "contact_admin", retryable: false }
    if (code.startsWith("22")) return { category: "data", recovery: "fix_data", retryable: false }
    if (code.startsWith("40")) return { category: "serialization", recovery: "retry", retryable: true }
  }
  // No SQLSTATE: the failure happened before or outside the server (socket, pool).
  switch (reasonTag) {
    case "ConnectionError":
      return { category: "connection", recovery: "check_network", retryable: true }
    case "AuthenticationError":
    case "AuthorizationError":
      return { category: "permission", recovery: "check_permissions", retryable: false }
    case "StatementTimeoutError":
    case "LockTimeoutError":
      return { category: "timeout", recovery: "retry", retryable: true }
    default:
      return { category: "unknown", recovery: "contact_admin", retryable: false }
  }
}

/** How the message of a connection-category error begins (the rest is the socket's or server's reason). */
export const unreachablePrefix = "cannot reach PostgreSQL: "

const describe = (category: DatabaseErrorCategory, kind: ConstraintKind | undefined, f: ServerFields): string => {
  const on = f.table ? ` on table "${f.table}"` : ""
  const col = f.column ? ` column "${f.column}"` : ""
  const named = f.constraint ? ` "${f.constraint}"` : ""
  const detail = f.detail ? ` (${f.detail})` : ""
  switch (kind) {
    case "not_null":
      return `a value is required for${col || " a column"}${on}`
    case "foreign_key":
      return `foreign key${named}${on} refers to a row that does not exist${detail}`
    case "unique":
      return `duplicate value violates unique constraint${named}${on}${detail}`
    case "check":
      return `check constraint${named}${on} rejected the row${detail}`
    case "state_machine":
      return f.message ?? `the task state machine rejected the change${on}`
    case "append_only":
      return f.message ?? `history is append-only${on}`
    default:
      break
  }
  const server = f.message ?? "no message from the server"
  switch (category) {
    case "serialization":
      return `serialization failure, the transaction can be retried: ${server}`
    case "deadlock":
      return `deadlock detected, the transaction can be retried: ${server}`
    case "timeout":
      return `statement cancelled by timeout: ${server}`
    case "connection":
      return `${unreachablePrefix}${server}`
    case "permission":
      return `permission denied${on}${col}: ${server}`
    default:
      return f.code ? `${server} [SQLSTATE ${f.code}]` : server
  }
}

/** Classifies an effect/sql `SqlError`. */
export const fromSqlError = (error: SqlError): DatabaseError => {
  const f = serverFields(error)
  const c = classifySqlstate(f.code, error.reason._tag)
  const kind = c.category === "constraint" ? (f.code !== undefined ? constraintKinds[f.code] ?? "other" : "other") : undefined
  const constraint = f.constraint ?? ("constraint" in error.reason ? (error.reason.constraint as string | undefined) : undefined)
  const fields = { ...f, ...(constraint === undefined ? {} : { constraint }) }
  return new DatabaseError({
    ...c,
    constraintKind: kind,
    sqlstate: f.code,
    table: f.table,
    column: f.column,
    constraint,
    message: redactSecrets(describe(c.category, kind, fields)),
    cause: error
  })
}

/** Any failure value as a `DatabaseError` when it is one or a `SqlError`. */
export const fromUnknown = (error: unknown): DatabaseError | undefined =>
  error instanceof DatabaseError ? error : isSqlError(error) ? fromSqlError(error) : undefined

/** Maps the `SqlError`s of an effect to `DatabaseError`s. */
export const mapSqlError = <A, E, R>(
  effect: Effect.Effect<A, E | SqlError, R>
): Effect.Effect<A, Exclude<E, SqlError> | DatabaseError, R> =>
  Effect.mapError(effect, (e) => (isSqlError(e) ? fromSqlError(e) : (e as Exclude<E, SqlError>)))
