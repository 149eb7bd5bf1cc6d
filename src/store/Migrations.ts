/**
 * Brings schema `taskfiber` up to date from the SQL files under `schema/` (see its README):
 *
 * - `migrations/NNN_name.sql`, versioned (tables, types, indexes): each applied once, in
 *   number order, by effect/sql's Migrator, recorded in `taskfiber_migrations`;
 * - `functions/*.sql`, then `views/*.sql`, by file name, repeatable: each file is the
 *   current definition of its functions, triggers and views. It is applied again whenever
 *   its sha256 differs from the one recorded in `taskfiber_repeatable_migrations`, after
 *   what it made last time (recorded too) is dropped: no old definition survives.
 *
 * A checksum that differs says the file changed, not which side is newer. `schema/revision`
 * says that: a number raised by every release whose repeatable files differ, with their
 * digest (`SchemaFiles.ts`); `taskfiber_schema_revision` records the one applied. Files of
 * a higher revision (or of a database with none recorded) are applied and their revision
 * recorded; of the same revision, the changed files are applied; of a lower one, nothing
 * is: they belong to an older taskfiber (a rolling deploy), which logs a warning and starts
 * with the newer schema, as it does when the database records a versioned migration newer
 * than its files. Files whose revision file was not written for them are refused
 * (`MigrationFailed`): their revision would not order them.
 *
 * One transaction under an advisory lock (two instances starting at once apply each file
 * exactly once; a failure leaves nothing half applied) drops the stale objects, runs the
 * versioned migrations (which may then change what those objects used), then the changed
 * repeatable files, and records the revision. When nothing is pending, two plain reads say
 * so and the transaction (15–20 ms of every start-up) is skipped.
 */
import { Data, Effect } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { fromUnknown } from "./DatabaseError.ts"
import {
  folderPath, readSchemaFiles, reviseCommand, type Revision, revisionMismatch, type SchemaFile, type SchemaFiles, schemaDirectory
} from "./SchemaFiles.ts"

export { repeatableFolders, schemaDirectory, type Revision, type SchemaFile, type SchemaFiles } from "./SchemaFiles.ts"
/** The table recording applied versioned migrations (effect/sql's Migrator's). */
export const migrationsTable = "taskfiber_migrations"
/** The table recording applied repeatable files: name, checksum, the objects each made. */
export const repeatableTable = "taskfiber_repeatable_migrations"
/** The one-row table recording the highest schema revision applied, with its digest. */
export const revisionTable = "taskfiber_schema_revision"
/** Arbitrary constant: the advisory lock key taken while migrating ("tfmigrat"). */
const LOCK_KEY = 0x74666d69

/** The schema could not be brought up to date. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Reads the files of a schema folder (default: the one taskfiber ships). */
export const readSchema = (directory: URL | string = schemaDirectory): Effect.Effect<SchemaFiles, MigrationFailed> =>
  Effect.tryPromise({
    try: () => readSchemaFiles(directory),
    catch: (cause) => new MigrationFailed({ message: `cannot read the schema files in ${folderPath(directory)}: ${cause}`, cause })
  })

/** What a database records (null: nothing yet). */
interface Recorded {
  readonly versioned: ReadonlyMap<number, string>
  readonly repeatable: ReadonlyMap<string, { readonly checksum: string; readonly objects: ReadonlyArray<string> }>
  readonly revision: Revision | null
}

const oldLayout = () => new MigrationFailed({
  message: `this database was migrated by a pre-release schema layout (${migrationsTable} without ${repeatableTable}), ` +
    `which has no upgrade path: reset it with \`drop schema taskfiber cascade; drop table ${migrationsTable};\` ` +
    `(this deletes every task) and start again`
})

const readRecorded: Effect.Effect<Recorded | null, SqlError | MigrationFailed, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  // Read from pg_class, not with to_regclass: a name lookup that finds nothing
  // leaves a negative entry in the session's catalog cache, which the Migrator's
  // own to_regclass would then trust, inside its transaction, after waiting for
  // another instance that created the table (and fail creating it again).
  const tables = new Set((yield* sql<{ name: string }>`
    select c.relname::text as name from pg_catalog.pg_class c
     where c.relname in (${migrationsTable}, ${repeatableTable}, ${revisionTable}) and c.relkind = 'r'
       and pg_catalog.pg_table_is_visible(c.oid)`).map((r) => r.name))
  if (!tables.has(migrationsTable)) return null
  if (!tables.has(repeatableTable)) return yield* oldLayout()
  // `id`: a versioned migration's number, or the revision.
  const rows = yield* sql<{ kind: string; id: number; name: string; checksum: string; objects: Array<string> }>`
    select 'versioned' as kind, migration_id as id, name, null::text as checksum, null::text[] as objects from ${sql(migrationsTable)}
    union all select 'repeatable', null, name, checksum, objects from ${sql(repeatableTable)}
    ${tables.has(revisionTable) ? sql`union all select 'revision', revision, null, digest, null from ${sql(revisionTable)}` : sql.literal("")}`
  const revision = rows.find((r) => r.kind === "revision")
  return {
    versioned: new Map(rows.filter((r) => r.kind === "versioned").map((r) => [r.id, r.name])),
    repeatable: new Map(rows.filter((r) => r.kind === "repeatable").map((r) => [r.name, r])),
    revision: revision ? { revision: revision.id, digest: revision.checksum } : null
  }
})

/**
 * The work left. `record`: the revision to record (these files'), replacing `replaced`.
 * `newer`: the database belongs to a newer taskfiber, which recorded `database`.
 */
interface Plan {
  readonly versioned: ReadonlyArray<SchemaFile>
  readonly changed: ReadonlyArray<SchemaFile>
  readonly removed: ReadonlyArray<string>
  readonly record?: Revision
  readonly replaced?: Revision | null
  readonly newer?: { readonly database: string; readonly files: string }
}

const nothing = (newer: NonNullable<Plan["newer"]>): Plan => ({ versioned: [], changed: [], removed: [], newer })

const planOf = (files: SchemaFiles, revision: Revision, recorded: Recorded | null): Effect.Effect<Plan, MigrationFailed> => {
  const versioned = recorded?.versioned ?? new Map<number, string>()
  const repeatable = recorded?.repeatable ?? new Map<string, { checksum: string }>()
  const newestFile = Math.max(0, ...files.versioned.map((f) => f.id))
  const pending = files.versioned.filter((f) => versioned.get(f.id) !== f.name)
  const unknown = [...versioned].find(([id, name]) => id <= newestFile && !files.versioned.some((f) => f.id === id && f.name === name))
  const late = pending.find((f) => f.id < Math.max(0, ...versioned.keys()))
  const future = [...versioned].find(([id]) => id > newestFile)
  if (unknown) {
    return Effect.fail(new MigrationFailed({
      message: `this database records migration ${unknown[0]}_${unknown[1]}, which schema/migrations/ does not have ` +
        `(a file was renamed, or the database was migrated from other files)`
    }))
  }
  // Without versioned records the schema is new: a revision left by a reset describes nothing.
  const applied = recorded?.revision ?? null
  if (applied && applied.revision > revision.revision) {
    return Effect.succeed(nothing({ database: `revision ${applied.revision}`, files: `revision ${revision.revision}` }))
  }
  if (future && pending.length === 0) {
    return Effect.succeed(nothing({ database: `migration ${future[0]}_${future[1]}`, files: `migrations up to ${newestFile}` }))
  }
  if (late) return Effect.fail(new MigrationFailed({ message: `${late.path} is numbered before a migration already applied: number it after` }))
  const current = applied?.revision === revision.revision && applied.digest === revision.digest
  return Effect.succeed({
    versioned: pending,
    changed: files.repeatable.filter((f) => repeatable.get(f.path)?.checksum !== f.checksum),
    removed: [...repeatable.keys()].filter((path) => !files.repeatable.some((f) => f.path === path)),
    ...(current ? {} : { record: revision, replaced: applied })
  })
}

const isEmpty = (plan: Plan) => plan.versioned.length + plan.changed.length + plan.removed.length === 0 && !plan.record

/**
 * Runs a whole SQL file as one server-side call. The client speaks the extended
 * protocol, which takes one statement per call; PL/pgSQL's EXECUTE takes many.
 */
const runSqlFile = (text: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.unsafe(`do $taskfiber_migration$ begin execute '${text.replaceAll("'", "''")}'; end $taskfiber_migration$`))

/** The routines, triggers and views of schema taskfiber, each as `kind identity` (what `drop kind if exists` takes). */
const objectsNow = Effect.flatMap(SqlClient, (sql) =>
  sql<{ object: string }>`
    select 'routine ' || p.oid::pg_catalog.regprocedure::text as object
      from pg_catalog.pg_proc p where p.pronamespace = 'taskfiber'::pg_catalog.regnamespace
    union all
    select pg_catalog.format('trigger %I on %s', t.tgname, t.tgrelid::pg_catalog.regclass)
      from pg_catalog.pg_trigger t join pg_catalog.pg_class c on c.oid = t.tgrelid
     where c.relnamespace = 'taskfiber'::pg_catalog.regnamespace and not t.tgisinternal
    union all
    select 'view ' || c.oid::pg_catalog.regclass::text from pg_catalog.pg_class c
     where c.relnamespace = 'taskfiber'::pg_catalog.regnamespace and c.relkind = 'v'
    order by 1`.pipe(Effect.map((rows) => rows.map((r) => r.object))))

/**
 * Drops what the changed and removed repeatable files made. It runs before the
 * versioned migrations, so that these may change what those objects depended on.
 */
const dropStale = (plan: Plan, recorded: Recorded | null) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`create table if not exists ${sql(repeatableTable)} (
      name text primary key, checksum text not null, objects text[] not null, applied_at timestamptz not null default now())`
    // Without versioned records the schema is new: rows left by a reset describe nothing.
    if (recorded === null) yield* sql`delete from ${sql(repeatableTable)}`
    // Triggers before the views and routines they use, views before routines.
    const kinds = ["trigger", "view", "routine"]
    const stale = [...plan.changed.map((f) => f.path), ...plan.removed].flatMap((path) => recorded?.repeatable.get(path)?.objects ?? [])
    for (const object of stale.sort((a, b) => kinds.indexOf(a.split(" ")[0]!) - kinds.indexOf(b.split(" ")[0]!))) {
      yield* sql.unsafe(`drop ${object.replace(" ", " if exists ")}`)
    }
    if (plan.removed.length > 0) yield* sql`delete from ${sql(repeatableTable)} where name = any(${plan.removed})`
  })

/** Applies the changed repeatable files, in order, recording what each made. */
const applyChanged = (plan: Plan) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    let before = new Set(yield* objectsNow)
    for (const file of plan.changed) {
      yield* runSqlFile(file.text).pipe(Effect.mapError((cause) =>
        new Migrator.MigrationError({ kind: "Failed", message: `Migration "${file.path}" failed`, cause })))
      const after = yield* objectsNow
      yield* sql`
        insert into ${sql(repeatableTable)} (name, checksum, objects)
        values (${file.path}, ${file.checksum}, ${after.filter((o) => !before.has(o))})
        on conflict (name) do update set checksum = excluded.checksum, objects = excluded.objects, applied_at = now()`
      before = new Set(after)
    }
  })

/** Records the revision applied, in a table of one row (its key can only be true). */
const recordRevision = (revision: Revision) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`create table if not exists ${sql(revisionTable)} (
      singleton boolean primary key default true check (singleton),
      revision integer not null, digest text not null, applied_at timestamptz not null default now())`
    yield* sql`
      insert into ${sql(revisionTable)} (revision, digest) values (${revision.revision}, ${revision.digest})
      on conflict (singleton) do update set revision = excluded.revision, digest = excluded.digest, applied_at = now()`
  })

const migrate = Migrator.make({})

/** What a plan is about to do, where it is not the plain case. */
const report = (plan: Plan) =>
  Effect.all([
    plan.newer
      ? Effect.logWarning(`the database's schema (${plan.newer.database}) is newer than this taskfiber's (${plan.newer.files}): nothing migrated`)
      : Effect.void,
    // Two sets of files carrying one revision: each would apply itself over the other.
    plan.record && plan.replaced?.revision === plan.record.revision
      ? Effect.logWarning(`schema revision ${plan.record.revision} was applied from other repeatable files: applying these ` +
        `(a release whose functions/ or views/ differ must raise the revision: ${reviseCommand})`)
      : Effect.void,
    plan.removed.length > 0 ? Effect.logInfo("repeatable migrations removed", { files: plan.removed }) : Effect.void
  ], { discard: true })

/** Brings the schema in `directory` (default: the one taskfiber ships) up to date; returns the files applied now. */
export const runFrom = (directory: URL | string = schemaDirectory): Effect.Effect<ReadonlyArray<string>, MigrationFailed, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const files = yield* readSchema(directory)
    const mismatch = revisionMismatch(files, directory)
    if (mismatch !== null) return yield* new MigrationFailed({ message: mismatch })
    const revision = files.revision!
    const quick = yield* planOf(files, revision, yield* readRecorded)
    if (isEmpty(quick)) return yield* Effect.as(report(quick), [])
    const plan = yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`select pg_advisory_xact_lock(${LOCK_KEY})`
      // Read again under the lock: another instance may have done it all meanwhile.
      const recorded = yield* readRecorded
      const plan = yield* planOf(files, revision, recorded)
      yield* report(plan)
      if (isEmpty(plan)) return plan
      const loader = Effect.succeed(plan.versioned.map((f) => [f.id, f.name, Effect.succeed(runSqlFile(f.text))] as const))
      yield* dropStale(plan, recorded)
      yield* migrate({ loader, table: migrationsTable })
      yield* applyChanged(plan)
      if (plan.record) yield* recordRevision(plan.record)
      return plan
    }))
    const applied = [...plan.versioned, ...plan.changed].map((f) => f.path)
    if (applied.length > 0) yield* Effect.logInfo("migrations applied", { files: applied, revision: revision.revision })
    else if (plan.record) yield* Effect.logInfo("schema revision recorded", { revision: revision.revision })
    return applied
  }).pipe(
    Effect.catchTag(["MigrationError", "SqlError"], (error: Migrator.MigrationError | SqlError) => {
      const db = fromUnknown(error._tag === "MigrationError" ? error.cause : error)
      // A server that cannot be reached is not a failed migration: say which it is.
      const message = db?.category === "connection"
        ? db.message
        : /Failed to connect/.test(error.message)
        ? `cannot connect to PostgreSQL: ${db?.message ?? error.message}`
        : `migration failed: ${error.message}${db ? `: ${db.message}` : ""}`
      return Effect.fail(new MigrationFailed({ message, cause: db ?? error }))
    })
  )

/** Brings the schema taskfiber ships up to date; returns the files applied now. */
export const run: Effect.Effect<ReadonlyArray<string>, MigrationFailed, SqlClient> = runFrom()
