import { expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PgClient } from "@effect/sql-pg"
import * as Migrations from "../../src/store/Migrations.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

it.live("two instances migrating at once apply each migration exactly once, and a re-run does nothing", () =>
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
    const files = (yield* Migrations.loader).length
    expect(files).toBeGreaterThanOrEqual(3)
    expect(appliedA.length + appliedB.length).toBe(files)
    expect(Math.min(appliedA.length, appliedB.length)).toBe(0)
    const again = yield* Migrations.run.pipe(Effect.provide(a))
    expect(again).toEqual([])
    const sql = yield* Effect.provide(SqlClient, a)
    const rows = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber_migrations`
    expect(rows[0]?.n).toBe(files)
  }).pipe(Effect.scoped))
