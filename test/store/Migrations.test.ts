/**
 * The migrator under deployments: instances starting at once, an up-to-date schema
 * read without the lock, and the schema revision that orders releases, so that an
 * older instance starting during a rolling deploy leaves a newer schema as it is.
 */
import { readFileSync, unlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PgClient } from "@effect/sql-pg"
import * as Migrations from "../../src/store/Migrations.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { bump, edit, emptyDatabase, migratedCopy, schemaCopy } from "../support/SchemaCopy.ts"

/** Runs an effect, collecting the messages it logs with their levels. */
const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<{ readonly level: string; readonly message: string }> = []
    const collector = Logger.make(({ logLevel, message }) => {
      lines.push({ level: logLevel, message: String(Array.isArray(message) ? message[0] : message) })
    })
    const result = yield* effect.pipe(Effect.provide(Logger.layer([collector])))
    return { result, lines }
  })

const revisionOf = (sql: SqlClient) =>
  sql<{ revision: number; digest: string }>`select revision, digest from taskfiber_schema_revision`

// A newer release widens the state machine: succeeded tasks may be queued again.
const newerBody = ["('failed',   'queued'))", "('failed',   'queued'), ('succeeded', 'queued'))"] as const
const transitionAllowed = (sql: SqlClient) =>
  sql<{ allowed: boolean; def: string }>`
    select taskfiber.transition_allowed('succeeded', 'queued') as allowed,
           pg_get_functiondef('taskfiber.transition_allowed'::regproc) as def`.pipe(Effect.map((rows) => rows[0]!))

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

it.live("a newer revision applies its changed files and records itself; an older instance starting after it migrates nothing, warning with both revisions", () =>
  Effect.gen(function*() {
    const sql = yield* emptyDatabase
    const older = yield* schemaCopy
    const newer = yield* schemaCopy
    edit(newer, "functions/state_machine.sql", ...newerBody)
    const shipped = (yield* Migrations.readSchema(older)).revision!
    const raised = (yield* bump(newer))!
    expect(raised.revision).toBe(shipped.revision + 1)
    const migrate = (dir: string) => Migrations.runFrom(dir).pipe(Effect.provideService(SqlClient, sql))

    // A fresh database gets the files' revision.
    expect((yield* migrate(older)).length).toBeGreaterThanOrEqual(4)
    expect(yield* revisionOf(sql)).toEqual([shipped])
    expect((yield* transitionAllowed(sql)).allowed).toBe(false)

    // The newer release: its changed file alone, and its revision recorded.
    expect(yield* migrate(newer)).toEqual(["functions/state_machine.sql"])
    expect(yield* revisionOf(sql)).toEqual([raised])
    const newest = yield* transitionAllowed(sql)
    expect(newest.allowed).toBe(true)

    // An older instance restarts (a rolling deploy): its own state_machine.sql differs
    // from the one recorded, but its revision is lower, so it applies nothing.
    const { result, lines } = yield* logged(migrate(older))
    expect(result).toEqual([])
    expect(yield* transitionAllowed(sql)).toEqual(newest)
    expect(yield* revisionOf(sql)).toEqual([raised])
    expect(lines.filter((l) => l.level === "Warn").map((l) => l.message)).toEqual([
      `the database's schema (revision ${raised.revision}) is newer than this taskfiber's (revision ${shipped.revision}): nothing migrated`
    ])
    // Nor does it when it has a versioned migration the database lacks.
    writeFileSync(join(older, "migrations/002_older_only.sql"), "create table taskfiber.older_only (id int primary key);")
    expect(yield* migrate(older)).toEqual([])
    const [left] = yield* sql<{ table: boolean }>`select to_regclass('taskfiber.older_only') is not null as table`
    expect(left?.table).toBe(false)
  }).pipe(Effect.scoped))

it.live("files whose revision file was not written for them are refused at start-up, naming the command that writes it; the database is left as it is", () =>
  Effect.gen(function*() {
    const { dir, migrate, sql } = yield* migratedCopy
    const before = yield* transitionAllowed(sql)

    // A function file changed, the revision not raised.
    edit(dir, "functions/state_machine.sql", ...newerBody)
    const changed = yield* Effect.flip(migrate)
    expect(changed._tag).toBe("MigrationFailed")
    expect(changed.message).toMatch(/\/revision \(revision \d+\) was written for other functions\/ and views\/ files than these/)
    expect(changed.message).toContain(`${dir}/revision (revision `)
    expect(changed.message).toContain("run `npm run schema:revision`")
    expect(yield* transitionAllowed(sql)).toEqual(before)

    // No revision file at all.
    const written = readFileSync(join(dir, "revision"))
    unlinkSync(join(dir, "revision"))
    const missing = yield* Effect.flip(migrate)
    expect(missing.message).toContain(`${dir}/revision is missing`)
    expect(missing.message).toContain("run `npm run schema:revision`")

    // Written, the files are applied.
    writeFileSync(join(dir, "revision"), written)
    yield* bump(dir)
    expect(yield* migrate).toEqual(["functions/state_machine.sql"])
    expect((yield* transitionAllowed(sql)).allowed).toBe(true)
  }).pipe(Effect.scoped))

it.live("two sets of files with one revision: the second is applied with a warning; a database without a recorded revision gets it, applying nothing", () =>
  Effect.gen(function*() {
    const sql = yield* emptyDatabase
    const a = yield* schemaCopy
    const b = yield* schemaCopy
    edit(a, "functions/state_machine.sql", ...newerBody)
    edit(b, "functions/cancel.sql", "create function", "-- b\ncreate function")
    const ra = (yield* bump(a))!
    const rb = (yield* bump(b))!
    expect(ra.revision).toBe(rb.revision)
    const migrate = (dir: string) => Migrations.runFrom(dir).pipe(Effect.provideService(SqlClient, sql))
    yield* migrate(a)

    // Equal revisions: the files that differ are applied (as when iterating on a file).
    const { result, lines } = yield* logged(migrate(b))
    expect(result.toSorted()).toEqual(["functions/cancel.sql", "functions/state_machine.sql"])
    expect(yield* revisionOf(sql)).toEqual([rb])
    expect(lines.filter((l) => l.level === "Warn").map((l) => l.message)).toEqual([
      `schema revision ${rb.revision} was applied from other repeatable files: applying these ` +
        "(a release whose functions/ or views/ differ must raise the revision: npm run schema:revision)"
    ])

    // A database whose schema was migrated before revisions were recorded: up to date,
    // it gets the revision and nothing else.
    yield* sql`drop table taskfiber_schema_revision`
    expect(yield* migrate(b)).toEqual([])
    expect(yield* revisionOf(sql)).toEqual([rb])
    expect(yield* migrate(b)).toEqual([])

    // A reset that left the revision behind: the new schema is migrated in full.
    yield* sql`drop schema taskfiber cascade`
    yield* sql`drop table taskfiber_migrations, taskfiber_repeatable_migrations`
    const shipped = (yield* Migrations.readSchema()).revision!
    expect(shipped.revision).toBeLessThan(rb.revision)
    expect((yield* Migrations.run.pipe(Effect.provideService(SqlClient, sql))).length).toBeGreaterThanOrEqual(4)
    expect(yield* revisionOf(sql)).toEqual([shipped])
  }).pipe(Effect.scoped))
