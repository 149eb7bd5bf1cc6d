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
 * One transaction under an advisory lock (two instances starting at once apply each file
 * exactly once; a failure leaves nothing half applied) drops the stale objects, runs the
 * versioned migrations (which may then change what those objects used), then the changed
 * repeatable files. When nothing is pending, two plain reads say so and the transaction
 * (15–20 ms of every start-up) is skipped. A database with versioned migrations newer than
 * these files belongs to a newer taskfiber (a rolling deploy) and is left as it is.
 */
import { createHash } from "node:crypto"
import { readdir, readFile } from "node:fs/promises"
import { pathToFileURL } from "node:url"
import { Data, Effect } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { fromUnknown } from "./DatabaseError.ts"

/** The schema folder taskfiber ships. */
export const schemaDirectory = new URL("../../schema/", import.meta.url)
/** The table recording applied versioned migrations (effect/sql's Migrator's). */
export const migrationsTable = "taskfiber_migrations"
/** The table recording applied repeatable files: name, checksum, the objects each made. */
export const repeatableTable = "taskfiber_repeatable_migrations"
/** The folders of repeatable files, in the order they are applied. */
export const repeatableFolders = ["functions", "views"] as const
/** Arbitrary constant: the advisory lock key taken while migrating ("tfmigrat"). */
const LOCK_KEY = 0x74666d69

/** The schema could not be brought up to date. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** One schema file, named by its path under the schema folder; `id`, `name`: a versioned file's `NNN_name`. */
export interface SchemaFile { readonly path: string; readonly text: string; readonly id: number; readonly name: string; readonly checksum: string }
/** A schema folder's files, each part in the order it is applied. */
export interface SchemaFiles { readonly versioned: ReadonlyArray<SchemaFile>; readonly repeatable: ReadonlyArray<SchemaFile> }

/** Reads the files of a schema folder (default: the one taskfiber ships). */
export const readSchema = (directory: URL | string = schemaDirectory): Effect.Effect<SchemaFiles, MigrationFailed> => {
  const root = typeof directory === "string" ? pathToFileURL(directory.replace(/\/?$/, "/")) : directory
  const read = async (folder: string): Promise<Array<SchemaFile>> => {
    const names = await readdir(new URL(`${folder}/`, root)).catch((e: NodeJS.ErrnoException) => e.code === "ENOENT" ? [] : Promise.reject(e))
    return Promise.all(names.filter((n) => n.endsWith(".sql")).sort().map(async (n) => {
      const text = await readFile(new URL(`${folder}/${n}`, root), "utf8")
      const m = /^(\d+)_(.+)\.sql$/.exec(n)
      return { path: `${folder}/${n}`, text, id: Number(m?.[1] ?? NaN), name: m?.[2] ?? n, checksum: createHash("sha256").update(text).digest("hex") }
    }))
  }
  return Effect.tryPromise({
    try: async () => ({
      versioned: (await read("migrations")).filter((f) => !Number.isNaN(f.id)).sort((a, b) => a.id - b.id),
      repeatable: (await Promise.all(repeatableFolders.map(read))).flat()
    }),
    catch: (cause) => new MigrationFailed({ message: `cannot read the schema files in ${root.pathname}: ${cause}`, cause })
  })
}

/** What a database records (null: nothing yet). */
interface Recorded {
  readonly versioned: ReadonlyMap<number, string>
  readonly repeatable: ReadonlyMap<string, { readonly checksum: string; readonly objects: ReadonlyArray<string> }>
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
     where c.relname in (${migrationsTable}, ${repeatableTable}) and c.relkind = 'r'
       and pg_catalog.pg_table_is_visible(c.oid)`).map((r) => r.name))
  if (!tables.has(migrationsTable)) return null
  if (!tables.has(repeatableTable)) return yield* oldLayout()
  const rows = yield* sql<{ id: number | null; name: string; checksum: string; objects: Array<string> }>`
    select migration_id as id, name, null::text as checksum, null::text[] as objects from ${sql(migrationsTable)}
    union all select null, name, checksum, objects from ${sql(repeatableTable)}`
  return {
    versioned: new Map(rows.filter((r) => r.id !== null).map((r) => [r.id!, r.name])),
    repeatable: new Map(rows.filter((r) => r.id === null).map((r) => [r.name, r]))
  }
})

/** The work left. `newer`: the database belongs to a newer taskfiber, which recorded this. */
interface Plan {
  readonly versioned: ReadonlyArray<SchemaFile>
  readonly changed: ReadonlyArray<SchemaFile>
  readonly removed: ReadonlyArray<string>
  readonly newer?: string
}

const planOf = (files: SchemaFiles, recorded: Recorded | null): Effect.Effect<Plan, MigrationFailed> => {
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
  if (future && pending.length === 0) return Effect.succeed({ versioned: [], changed: [], removed: [], newer: `${future[0]}_${future[1]}` })
  if (late) return Effect.fail(new MigrationFailed({ message: `${late.path} is numbered before a migration already applied: number it after` }))
  return Effect.succeed({
    versioned: pending,
    changed: files.repeatable.filter((f) => repeatable.get(f.path)?.checksum !== f.checksum),
    removed: [...repeatable.keys()].filter((path) => !files.repeatable.some((f) => f.path === path))
  })
}

const isEmpty = (plan: Plan) => plan.versioned.length + plan.changed.length + plan.removed.length === 0

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

const migrate = Migrator.make({})

const report = (plan: Plan) =>
  plan.newer ? Effect.logWarning("the database's schema is newer than this taskfiber's: nothing migrated", { recorded: plan.newer })
  : plan.removed.length > 0 ? Effect.logInfo("repeatable migrations removed", { files: plan.removed })
  : Effect.void

/** Brings the schema in `directory` (default: the one taskfiber ships) up to date; returns the files applied now. */
export const runFrom = (directory: URL | string = schemaDirectory): Effect.Effect<ReadonlyArray<string>, MigrationFailed, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const files = yield* readSchema(directory)
    const quick = yield* planOf(files, yield* readRecorded)
    if (isEmpty(quick)) return yield* Effect.as(report(quick), [])
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`select pg_advisory_xact_lock(${LOCK_KEY})`
      // Read again under the lock: another instance may have done it all meanwhile.
      const recorded = yield* readRecorded
      const plan = yield* planOf(files, recorded)
      yield* report(plan)
      if (isEmpty(plan)) return []
      const loader = Effect.succeed(plan.versioned.map((f) => [f.id, f.name, Effect.succeed(runSqlFile(f.text))] as const))
      yield* dropStale(plan, recorded)
      yield* migrate({ loader, table: migrationsTable })
      yield* applyChanged(plan)
      return [...plan.versioned, ...plan.changed].map((f) => f.path)
    }))
  }).pipe(
    Effect.tap((applied) => (applied.length > 0 ? Effect.logInfo("migrations applied", { files: applied }) : Effect.void)),
    Effect.catchTag(["MigrationError", "SqlError"], (error: Migrator.MigrationError | SqlError) => {
      const db = fromUnknown(error._tag === "MigrationError" ? error.cause : error)
      return Effect.fail(new MigrationFailed({ message: `migration failed: ${error.message}${db ? `: ${db.message}` : ""}`, cause: db ?? error }))
    })
  )

/** Brings the schema taskfiber ships up to date; returns the files applied now. */
export const run: Effect.Effect<ReadonlyArray<string>, MigrationFailed, SqlClient> = runFrom()
