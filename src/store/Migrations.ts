/**
 * Applies the numbered SQL files in `schema/` with effect/sql's Migrator.
 *
 * All pending migrations run in one transaction that first takes a transaction-level
 * advisory lock, so two instances starting at once apply them exactly once (the
 * second waits, then finds nothing to do), and a failure leaves no half-applied
 * schema. Running again is a no-op, and cheap: when the newest file's number is
 * already recorded, two plain reads say so and the locking transaction (nine round
 * trips, 15–20 ms of every start-up) is skipped.
 */
import { readdir, readFile } from "node:fs/promises"
import { Data, Effect } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { fromUnknown } from "./DatabaseError.ts"

/** The folder of numbered `NNN_name.sql` migrations. */
export const schemaDirectory = new URL("../../schema/", import.meta.url)

/** The table recording applied migrations. */
export const migrationsTable = "taskfiber_migrations"

/** Arbitrary constant: the advisory lock key taken while migrating ("tfmigrat"). */
const LOCK_KEY = 0x74666d69

/** The schema could not be brought up to date. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Runs a whole SQL file as one server-side call. The client speaks the extended
 * protocol, which takes one statement per call; PL/pgSQL's EXECUTE takes many.
 */
const runSqlFile = (text: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.unsafe(`do $taskfiber_migration$ begin execute '${text.replaceAll("'", "''")}'; end $taskfiber_migration$`)
  )

const migrationFiles = async () => (await readdir(schemaDirectory)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort()

const unreadable = (cause: unknown) =>
  new Migrator.MigrationError({ kind: "ImportError", message: `cannot read ${schemaDirectory.pathname}`, cause })

/** Loads `schema/NNN_name.sql`, in order. */
export const loader: Migrator.Loader<never> = Effect.tryPromise({
  try: async () => {
    const files = await migrationFiles()
    const record: Record<string, Effect.Effect<unknown, unknown, SqlClient>> = {}
    for (const file of files) {
      const text = await readFile(new URL(file, schemaDirectory), "utf8")
      record[file.replace(/\.sql$/, "")] = runSqlFile(text)
    }
    return record
  },
  catch: unreadable
}).pipe(Effect.flatMap(Migrator.fromRecord))

/** The newest file's number (0 with none). */
const newestFile = Effect.tryPromise({
  try: async () => Math.max(0, ...(await migrationFiles()).map((f) => Number.parseInt(f, 10))),
  catch: unreadable
})

/**
 * The newest migration recorded (0 before the first). Ids are applied in order,
 * each batch in one transaction, so every smaller one is recorded too.
 */
const newestApplied = Effect.gen(function*() {
  const sql = yield* SqlClient
  // Read from pg_class, not with to_regclass: a name lookup that finds nothing
  // leaves a negative entry in the session's catalog cache, which the Migrator's
  // own to_regclass would then trust, inside its transaction, after waiting for
  // another instance that created the table (and fail creating it again).
  const [table] = yield* sql<{ present: boolean }>`
    select exists (select from pg_catalog.pg_class c
                    where c.relname = ${migrationsTable} and c.relkind = 'r'
                      and pg_catalog.pg_table_is_visible(c.oid)) as present`
  if (table?.present !== true) return 0
  const [row] = yield* sql<{ id: number | null }>`select max(migration_id)::int as id from ${sql(migrationsTable)}`
  return row?.id ?? 0
})

const migrate = Migrator.make({})

/** Brings the schema up to date; returns the migrations applied now. */
export const run: Effect.Effect<ReadonlyArray<readonly [number, string]>, MigrationFailed, SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient
    if ((yield* newestApplied) >= (yield* newestFile)) return []
    return yield* sql.withTransaction(
      Effect.gen(function*() {
        yield* sql`select pg_advisory_xact_lock(${LOCK_KEY})`
        return yield* migrate({ loader, table: migrationsTable })
      })
    )
  }
).pipe(
  Effect.tap((applied) =>
    applied.length > 0 ? Effect.logInfo("migrations applied", { migrations: applied.map(([id, name]) => `${id}_${name}`) }) : Effect.void
  ),
  Effect.mapError((error: Migrator.MigrationError | SqlError) => {
    const inner = error._tag === "MigrationError" ? error.cause : error
    const db = fromUnknown(inner)
    return new MigrationFailed({
      message: `migration failed: ${error.message}${db ? `: ${db.message}` : ""}`,
      cause: db ?? error
    })
  })
)
