/**
 * Each SQLSTATE category, produced by a real statement on a real PostgreSQL and
 * classified by DatabaseError.fromSqlError (no mocks: the errors come off the wire).
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Layer, Redacted } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { redactSecrets } from "../../src/domain/Redact.ts"
import { classifySqlstate, type DatabaseError, fromUnknown } from "../../src/store/DatabaseError.ts"
import { transaction } from "../../src/store/Transaction.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { freePort } from "../support/freePort.ts"

/** The classified failure of an effect that must fail with a database error. */
const failure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flip(effect).pipe(Effect.flatMap((e) => {
    const d = fromUnknown(e)
    return d === undefined ? Effect.die(new Error(`not a database error: ${String(e)}`)) : Effect.succeed(d)
  }))

const expectShape = (e: DatabaseError, shape: Partial<DatabaseError>) => expect(e).toMatchObject(shape)

/** A constraint violation: not retryable, fix the data. */
const constraint = (shape: Partial<DatabaseError>): Partial<DatabaseError> =>
  ({ category: "constraint", retryable: false, recovery: "fix_data", ...shape })

/** Tables with one constraint of each kind, and two rows to lock. */
const Fixtures = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`create table parent (id int primary key)`
  yield* sql`create table child (
    id int primary key,
    parent_id int constraint child_parent_fk references parent (id),
    qty int not null constraint child_qty_positive check (qty > 0),
    code text constraint child_code_unique unique)`
  yield* sql`insert into parent values (1)`
  yield* sql`insert into child values (1, 1, 1, 'a')`
  yield* sql`create table counters (id int primary key, n int not null)`
  yield* sql`insert into counters values (1, 0), (2, 0)`
})).pipe(Layer.provideMerge(TestDatabase.layer()))

/** A role for the scope, with no privileges at all (roles are server-wide: always dropped). */
const roleWithoutPrivileges = Effect.acquireRelease(
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const role = `tf_nobody_${Math.random().toString(36).slice(2, 10)}`
    yield* sql.unsafe(`create role ${role}`)
    return role
  }),
  (role) => Effect.flatMap(SqlClient, (sql) => sql.unsafe(`drop role if exists ${role}`)).pipe(Effect.ignore)
)

/** A loopback port nothing listens on: bound by the OS, then closed. */
const closedPort = Effect.promise(freePort)

it.layer(Fixtures, { timeout: 60_000 })("DatabaseError from real statements", (it) => {
  const constraintCases = [
    { sqlstate: "23502", kind: "not_null", names: `column "qty"`, fields: { column: "qty", table: "child" },
      statement: (sql: SqlClient) => sql`insert into child (id, parent_id, qty) values (2, 1, null)` },
    { sqlstate: "23503", kind: "foreign_key", names: `"child_parent_fk"`, fields: { constraint: "child_parent_fk", table: "child" },
      statement: (sql: SqlClient) => sql`insert into child values (3, 99, 1, 'x')` },
    { sqlstate: "23505", kind: "unique", names: `"child_code_unique"`, fields: { constraint: "child_code_unique", table: "child" },
      statement: (sql: SqlClient) => sql`insert into child values (4, 1, 1, 'a')` },
    { sqlstate: "23514", kind: "check", names: `"child_qty_positive"`, fields: { constraint: "child_qty_positive", table: "child" },
      statement: (sql: SqlClient) => sql`insert into child values (5, 1, -1, 'z')` }
  ] as const
  for (const c of constraintCases) {
    it.effect(`${c.sqlstate} ${c.kind} names ${c.names}`, () =>
      Effect.gen(function*() {
        const e = yield* failure(Effect.flatMap(SqlClient, c.statement))
        expectShape(e, constraint({ constraintKind: c.kind, sqlstate: c.sqlstate, ...c.fields }))
        expect(e.message).toContain(c.names)
      }))
  }

  it.effect("TF001: a forbidden task move by raw SQL is a state-machine constraint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [task] = yield* sql<{ id: string }>`insert into taskfiber.tasks (type) values ('t') returning id`
      const e = yield* failure(sql`update taskfiber.tasks set status = 'succeeded' where id = ${task!.id}`)
      expectShape(e, constraint({ constraintKind: "state_machine", sqlstate: "TF001", table: "tasks", column: "status" }))
      expect(e.message).toContain("queued -> succeeded")
      // TF002: history rows are append-only.
      const history = yield* failure(sql`update taskfiber.task_events set attempt = 9 where task_id = ${task!.id}`)
      expectShape(history, constraint({ constraintKind: "append_only", sqlstate: "TF002", table: "task_events" }))
    }))

  it.effect("22P02 bad input text is a data error", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`select ${"not-a-uuid"}::uuid`)
      expectShape(e, { category: "data", sqlstate: "22P02", recovery: "fix_data", retryable: false })
      expect(e.message).toContain("not-a-uuid")
    }))

  it.effect("40001 serialization failure: a repeatable read tx updates a row changed since it read it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const read = yield* Deferred.make<void>()
      const written = yield* Deferred.make<void>()
      const [e] = yield* Effect.all([
        failure(transaction(Effect.gen(function*() {
          yield* sql`select n from counters where id = 1`
          yield* Deferred.succeed(read, undefined)
          yield* Deferred.await(written)
          yield* sql`update counters set n = n + 1 where id = 1`
        }), { isolation: "repeatable read", retry: false })),
        Effect.gen(function*() {
          yield* Deferred.await(read)
          yield* sql`update counters set n = n + 10 where id = 1`
          yield* Deferred.succeed(written, undefined)
        })
      ], { concurrency: 2 })
      expectShape(e, { category: "serialization", sqlstate: "40001", retryable: true, recovery: "retry" })
      expect(e.constraintKind).toBeUndefined()
      expect(e.message).toContain("serialization failure")
    }))

  it.effect("40P01 deadlock: two transactions lock two rows in opposite order", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const a = yield* Deferred.make<void>()
      const b = yield* Deferred.make<void>()
      const lockBoth = (first: number, second: number, mine: Deferred.Deferred<void>, theirs: Deferred.Deferred<void>) =>
        transaction(Effect.gen(function*() {
          yield* sql`update counters set n = n + 1 where id = ${first}`
          yield* Deferred.succeed(mine, undefined)
          yield* Deferred.await(theirs)
          yield* sql`update counters set n = n + 1 where id = ${second}`
        }), { retry: false }).pipe(Effect.flip, Effect.option)
      const outcomes = yield* Effect.all([lockBoth(1, 2, a, b), lockBoth(2, 1, b, a)], { concurrency: 2 })
      const errors = outcomes.flatMap((o) => (o._tag === "Some" ? [fromUnknown(o.value)] : []))
      expect(errors).toHaveLength(1) // PostgreSQL aborts one; the other commits
      expectShape(errors[0]!, { category: "deadlock", sqlstate: "40P01", retryable: true, recovery: "retry" })
      expect(errors[0]!.message).toContain("deadlock detected")
    }))

  it.effect("57014 statement timeout set by transaction()", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(transaction(sql`select pg_sleep(5)`, { statementTimeout: "100 millis" }))
      expectShape(e, { category: "timeout", sqlstate: "57014", retryable: true, recovery: "retry" })
      expect(e.message).toContain("statement timeout")
    }))

  it.effect("42501 permission denied for a role without privileges", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const role = yield* roleWithoutPrivileges
      const e = yield* failure(transaction(Effect.gen(function*() {
        yield* sql.unsafe(`set local role ${role}`)
        yield* sql`select * from counters`
      })))
      expectShape(e, { category: "permission", sqlstate: "42501", recovery: "check_permissions", retryable: false })
      expect(e.message).toContain("counters")
    }))

  it.effect("42601 syntax error and 42703 undefined column are query errors", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const syntax = yield* failure(sql.unsafe("selec 1"))
      expectShape(syntax, { category: "query", sqlstate: "42601", recovery: "contact_admin", retryable: false })
      expect(syntax.message).toContain(`"selec"`)
      const column = yield* failure(sql`select nope from counters`)
      expectShape(column, { category: "query", sqlstate: "42703", recovery: "contact_admin", retryable: false })
      expect(column.message).toContain(`"nope"`)
    }))

  it.effect("a secret in a server message is redacted", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql.unsafe(
        `do $$ begin raise exception 'cannot reach postgres://app:s3cr3t@db.internal/x (password=hunter2)'; end $$`
      ))
      expectShape(e, { category: "unknown", sqlstate: "P0001", retryable: false, recovery: "contact_admin" })
      expect(e.message).toContain("postgres://app:***@db.internal/x")
      expect(`${e.message} ${String(e)}`).not.toMatch(/s3cr3t|hunter2/)
    }))

  it.effect("pg_terminate_backend: a connection the server closes is a connection error", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`select pg_terminate_backend(pg_backend_pid())`)
      // PostgreSQL sends FATAL 57P01 and closes the socket; the client reports the close.
      expectShape(e, { category: "connection", retryable: true, recovery: "check_network" })
      // The pool replaces the dead connection.
      expect(yield* sql<{ one: number }>`select 1 as one`).toEqual([{ one: 1 }])
    }))
})

describe("DatabaseError without a server", () => {
  it.effect("a refused connection is a connection error and its password never shows", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const url = `postgres://postgres:hunter2-secret@127.0.0.1:${port}/postgres`
      const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1, connectTimeout: "2 seconds" }))
      const e = yield* failure(Context.get(ctx, SqlClient)`select 1`)
      expectShape(e, { category: "connection", retryable: true, recovery: "check_network", sqlstate: undefined })
      expect(e.message).toContain("cannot reach PostgreSQL")
      for (const text of [e.message, String(e), JSON.stringify(e)]) expect(text).not.toContain("hunter2")
    }).pipe(Effect.scoped))

  it("classifySqlstate: every class", () => {
    const cases: ReadonlyArray<readonly [string | undefined, string | undefined, string, string, boolean]> = [
      ["23505", undefined, "constraint", "fix_data", false],
      ["23P01", undefined, "constraint", "fix_data", false],
      ["TF001", undefined, "constraint", "fix_data", false],
      ["TF002", undefined, "constraint", "fix_data", false],
      ["22P02", undefined, "data", "fix_data", false],
      ["22003", undefined, "data", "fix_data", false],
      ["40001", undefined, "serialization", "retry", true],
      ["40P01", undefined, "deadlock", "retry", true],
      ["57014", undefined, "timeout", "retry", true],
      ["55P03", undefined, "timeout", "retry", true],
      ["08006", undefined, "connection", "check_network", true],
      ["08001", undefined, "connection", "check_network", true],
      ["57P01", undefined, "connection", "check_network", true],
      ["53300", undefined, "connection", "check_network", true],
      ["42501", undefined, "permission", "check_permissions", false],
      ["28P01", undefined, "permission", "check_permissions", false],
      ["42601", undefined, "query", "contact_admin", false],
      ["42P01", undefined, "query", "contact_admin", false],
      ["XX000", undefined, "unknown", "contact_admin", false],
      [undefined, "ConnectionError", "connection", "check_network", true],
      [undefined, "AuthenticationError", "permission", "check_permissions", false],
      [undefined, "StatementTimeoutError", "timeout", "retry", true],
      [undefined, undefined, "unknown", "contact_admin", false]
    ]
    for (const [code, tag, category, recovery, retryable] of cases) {
      expect({ code, tag, ...classifySqlstate(code, tag) }).toEqual({ code, tag, category, recovery, retryable })
    }
  })

  it("redactSecrets masks URL passwords, bearer tokens and password pairs", () => {
    expect(redactSecrets("postgres://u:p%40ss@h:5432/db")).toBe("postgres://u:***@h:5432/db")
    expect(redactSecrets("a postgresql://x:1@h/a and redis://:pw@r:6379")).toBe("a postgresql://x:***@h/a and redis://:***@r:6379")
    expect(redactSecrets("Authorization: Bearer eyJ.abc.def")).toBe("Authorization: Bearer ***")
    expect(redactSecrets("host=h password=s3cret user=u")).toBe("host=h password=*** user=u")
    expect(redactSecrets(`pwd: 'two words', token=abc&secret="x y"`)).toBe(`pwd: ***, token=***&secret=***`)
    expect(redactSecrets("postgres://u@h/db, nothing secret")).toBe("postgres://u@h/db, nothing secret")
  })
})
