/**
 * Each SQLSTATE category, produced by a real statement on a real PostgreSQL and
 * classified by DatabaseError.fromSqlError.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Redacted } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { redactSecrets } from "../../src/domain/Redact.ts"
import { classifySqlstate, type DatabaseError, fromUnknown } from "../../src/store/DatabaseError.ts"
import { transaction } from "../../src/store/Transaction.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

/** The classified failure of an effect that must fail with a database error. */
const failure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flip(effect).pipe(Effect.map((e) => {
    const d = fromUnknown(e)
    if (d === undefined) throw new Error(`not a database error: ${String(e)}`)
    return d
  }))

const expectShape = (e: DatabaseError, shape: Partial<DatabaseError>) => expect(e).toMatchObject(shape)

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

it.layer(Fixtures, { timeout: 60_000 })("DatabaseError from real statements", (it) => {
  it.effect("23502 not null names the column", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`insert into child (id, parent_id, qty) values (2, 1, null)`)
      expectShape(e, { category: "constraint", constraintKind: "not_null", sqlstate: "23502", column: "qty", table: "child", retryable: false, recovery: "fix_data" })
      expect(e.message).toContain(`column "qty"`)
    }))

  it.effect("23503 foreign key names the constraint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`insert into child values (3, 99, 1, 'x')`)
      expectShape(e, { category: "constraint", constraintKind: "foreign_key", sqlstate: "23503", constraint: "child_parent_fk", retryable: false })
      expect(e.message).toContain("child_parent_fk")
    }))

  it.effect("23505 unique names the constraint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`insert into child values (4, 1, 1, 'a')`)
      expectShape(e, { category: "constraint", constraintKind: "unique", sqlstate: "23505", constraint: "child_code_unique", recovery: "fix_data" })
      expect(e.message).toContain("child_code_unique")
    }))

  it.effect("23514 check names the constraint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`insert into child values (5, 1, -1, 'z')`)
      expectShape(e, { category: "constraint", constraintKind: "check", sqlstate: "23514", constraint: "child_qty_positive" })
      expect(e.message).toContain("child_qty_positive")
    }))

  it.effect("TF001: a forbidden task move is a state-machine constraint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`insert into taskfiber.tasks (type) values ('t')`
      const e = yield* failure(sql`update taskfiber.tasks set status = 'succeeded'`)
      expectShape(e, { category: "constraint", constraintKind: "state_machine", sqlstate: "TF001", retryable: false })
    }))

  it.effect("22P02 bad input text is a data error", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`select ${"not-a-uuid"}::uuid`)
      expectShape(e, { category: "data", sqlstate: "22P02", recovery: "fix_data", retryable: false })
    }))

  it.effect("40001 serialization failure (repeatable read, concurrent update)", () =>
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
    }))

  it.effect("40P01 deadlock", () =>
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
    }))

  it.effect("57014 statement timeout", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(transaction(sql`select pg_sleep(5)`, { statementTimeout: "100 millis", retry: false }))
      expectShape(e, { category: "timeout", sqlstate: "57014", retryable: true, recovery: "retry" })
    }))

  it.effect("42501 permission denied", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const role = `tf_nobody_${Math.random().toString(36).slice(2, 8)}`
      yield* sql.unsafe(`create role ${role}`)
      const e = yield* failure(transaction(Effect.gen(function*() {
        yield* sql.unsafe(`set local role ${role}`)
        yield* sql`select * from counters`
      }), { retry: false }))
      yield* sql.unsafe(`drop role ${role}`)
      expectShape(e, { category: "permission", sqlstate: "42501", recovery: "check_permissions", retryable: false })
    }))

  it.effect("42601 syntax error and 42703 undefined column are query errors", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const syntax = yield* failure(sql.unsafe("selec 1"))
      expectShape(syntax, { category: "query", sqlstate: "42601", recovery: "contact_admin", retryable: false })
      const column = yield* failure(sql`select nope from counters`)
      expectShape(column, { category: "query", sqlstate: "42703" })
    }))

  it.effect("57P01: the server terminating the connection is a connection error", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const e = yield* failure(sql`select pg_terminate_backend(pg_backend_pid())`)
      expectShape(e, { category: "connection", retryable: true, recovery: "check_network" })
    }))
})

describe("DatabaseError without a server", () => {
  it.effect("a refused connection is a connection error and its password never shows", () =>
    Effect.gen(function*() {
      const url = "postgres://postgres:hunter2-secret@127.0.0.1:9/postgres"
      const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1, connectTimeout: "2 seconds" }))
      const sql = yield* Effect.provide(SqlClient, ctx)
      const e = yield* failure(sql`select 1`)
      expectShape(e, { category: "connection", retryable: true, recovery: "check_network" })
      expect(e.message).not.toContain("hunter2")
      expect(String(e)).not.toContain("hunter2")
      expect(JSON.stringify(e)).not.toContain("hunter2")
    }).pipe(Effect.scoped))

  it("classifies every SQLSTATE class", () => {
    expect(classifySqlstate("08006").category).toBe("connection")
    expect(classifySqlstate("08001")).toEqual({ category: "connection", recovery: "check_network", retryable: true })
    expect(classifySqlstate("53300").category).toBe("connection")
    expect(classifySqlstate("55P03")).toEqual({ category: "timeout", recovery: "retry", retryable: true })
    expect(classifySqlstate("28P01")).toEqual({ category: "permission", recovery: "check_permissions", retryable: false })
    expect(classifySqlstate("23P01").category).toBe("constraint")
    expect(classifySqlstate("XX000")).toEqual({ category: "unknown", recovery: "contact_admin", retryable: false })
    expect(classifySqlstate(undefined, "ConnectionError").category).toBe("connection")
  })

  it("redacts URL passwords, bearer tokens and password pairs", () => {
    expect(redactSecrets("postgres://u:p%40ss@h:5432/db")).toBe("postgres://u:***@h:5432/db")
    expect(redactSecrets("Authorization: Bearer eyJ.abc.def")).toBe("Authorization: Bearer ***")
    expect(redactSecrets("host=h password=s3cret user=u")).toBe("host=h password=*** user=u")
    expect(redactSecrets("postgres://u@h/db")).toBe("postgres://u@h/db")
  })
})
