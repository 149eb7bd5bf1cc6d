import { expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PgClient } from "@effect/sql-pg"
import * as Migrations from "../../src/store/Migrations.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

it.live("two instances migrating at once apply each file exactly once, and a re-run does nothing", () =>
  Effect.gen(function*() {
    const name = yield* TestDatabase.scopedDatabase
    const url = Redacted.make(TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name))
    // Two independent pools, as two service instances would have.
    const instance = () => Layer.build(PgClient.layer({ url, maxConnections: 2 }))
    const [a, b] = yield* Effect.all([instance(), instance()])
    const [appliedA, appliedB] = yield* Effect.all(
      [Migrations.run.pipe(Effect.provide(a)), Migrations.run.pipe(Effect.provide(b))],
      { concurrency: 2 }
    )
    const { versioned, repeatable } = yield* Migrations.readSchema()
    expect(versioned.length).toBeGreaterThanOrEqual(1)
    expect(repeatable.length).toBeGreaterThanOrEqual(3)
    expect([...appliedA, ...appliedB].sort()).toEqual([...versioned, ...repeatable].map((f) => f.path).sort())
    expect(Math.min(appliedA.length, appliedB.length)).toBe(0)
    const again = yield* Migrations.run.pipe(Effect.provide(a))
    expect(again).toEqual([])
    const sql = yield* Effect.provide(SqlClient, a)
    const rows = yield* sql<{ versioned: number; repeatable: number }>`
      select (select count(*)::int from taskfiber_migrations) as versioned,
             (select count(*)::int from taskfiber_repeatable_migrations) as repeatable`
    expect(rows[0]).toEqual({ versioned: versioned.length, repeatable: repeatable.length })
  }).pipe(Effect.scoped))

it.live("an up-to-date schema is recognised without the migration lock: a start-up never waits behind another instance", () =>
  Effect.gen(function*() {
    const name = yield* TestDatabase.scopedDatabase
    const url = Redacted.make(TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name))
    const a = yield* Layer.build(PgClient.layer({ url, maxConnections: 2 }))
    const b = yield* Layer.build(PgClient.layer({ url, maxConnections: 2 }))
    expect((yield* Migrations.run.pipe(Effect.provide(a))).length).toBeGreaterThanOrEqual(4)
    // Another instance holds the migration lock (as while it migrates) for the whole check.
    const holder = yield* Effect.provide(SqlClient, b)
    yield* holder.withTransaction(Effect.gen(function*() {
      yield* holder`select pg_advisory_xact_lock(${0x74666d69})`
      const again = yield* Migrations.run.pipe(Effect.provide(a), Effect.timeout("5 seconds"))
      expect(again).toEqual([])
    }))
  }).pipe(Effect.scoped))
