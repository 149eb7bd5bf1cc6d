/**
 * The schema's files are its truth: a migrated database holds exactly what they
 * declare, nothing more; a re-run changes nothing; a changed repeatable file is
 * applied again (it alone) and leaves nothing of its old definitions; a database of
 * the pre-release layout is refused with the way to reset it. The revision file shipped
 * is the one written for these files, and the script that writes it does so.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Migrations from "../../src/store/Migrations.ts"
import * as SchemaFiles from "../../src/store/SchemaFiles.ts"
import { bump, emptyDatabase, migratedCopy, schemaCopy } from "../support/SchemaCopy.ts"

/** Everything of schema taskfiber, with oids: equal snapshots mean nothing was made again. */
const snapshot = (sql: SqlClient) =>
  sql<{ line: string }>`
    select 'function ' || p.oid || ' ' || coalesce(p.proconfig::text, '-') || ' ' || pg_get_functiondef(p.oid) as line
      from pg_proc p where p.pronamespace = 'taskfiber'::regnamespace
    union all
    select 'trigger ' || t.oid || ' ' || pg_get_triggerdef(t.oid) from pg_trigger t
      join pg_class c on c.oid = t.tgrelid where c.relnamespace = 'taskfiber'::regnamespace and not t.tgisinternal
    union all
    select 'relation ' || c.oid || ' ' || c.relname || ' ' || c.relkind::text
           || coalesce(' ' || pg_get_indexdef(c.oid), '') from pg_class c
     where c.relnamespace = 'taskfiber'::regnamespace
    union all
    select format('column %s.%s %s %s %s', a.attrelid::regclass, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
      from pg_attribute a join pg_class c on c.oid = a.attrelid
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where c.relnamespace = 'taskfiber'::regnamespace and a.attnum > 0 and not a.attisdropped
    union all
    select 'constraint ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
      from pg_constraint k where k.connamespace = 'taskfiber'::regnamespace
    union all
    select 'type ' || t.oid || ' ' || t.typname from pg_type t where t.typnamespace = 'taskfiber'::regnamespace
    order by 1`.pipe(Effect.map((rows) => rows.map((r) => r.line)))

// The files' declarations, read from their text. Each statement is written one way
// in these files (`create function taskfiber.x(…) returns … [set …] as $$…$$;`,
// `create trigger x before|after … on taskfiber.t … execute function taskfiber.f();`),
// so a regular expression finds every one; the catalog test fails if one is missed.
const functionStatement = /create function taskfiber\.(\w+)\s*\([\s\S]*?\)\s*returns\b([\s\S]*?)\bas \$\$([\s\S]*?)\$\$;/g
const triggerStatement = /create trigger (\w+)\s+(before|after)\s+(\w+(?:\s+or\s+\w+)*)\s+on\s+taskfiber\.(\w+)([\s\S]*?)execute function taskfiber\.(\w+)\(\);/g

interface DeclaredFunction { readonly name: string; readonly config: ReadonlyArray<string>; readonly body: string }
const declaredFunctions = (text: string): Array<DeclaredFunction> =>
  [...text.matchAll(functionStatement)].map(([, name, header, body]) => ({
    name: name!,
    // `set name = value` clauses, in order, as proconfig holds them ('name=value').
    config: [...header!.replace(/--.*$/gm, "").matchAll(/\bset\s+(\w+)\s*(?:=|to)\s*'?([\w.]+)'?/g)].map(([, k, v]) => `${k}=${v}`),
    body: body!
  }))

const declaredTriggers = (text: string) =>
  [...text.matchAll(triggerStatement)].map(([, name, timing, events, table, rest, fn]) => ({
    name: name!,
    table: `taskfiber.${table}`,
    fn: `taskfiber.${fn}`,
    timing: timing!,
    level: /for each row/.test(rest!) ? "row" : "statement",
    events: events!.split(/\s+or\s+/).sort(),
    conditional: /\bwhen\s*\(/.test(rest!)
  }))

const byName = <A extends { readonly name: string }>(xs: ReadonlyArray<A>) => [...xs].sort((a, b) => a.name.localeCompare(b.name))

it.live("a migrated database holds exactly what the files declare: functions (with their settings and bodies), triggers, tables, indexes, types", () =>
  Effect.gen(function*() {
    const sql = yield* emptyDatabase
    yield* Migrations.run.pipe(Effect.provideService(SqlClient, sql))
    const files = yield* Migrations.readSchema()
    const functionTexts = files.repeatable.map((f) => f.text).join("\n")
    const versionedTexts = files.versioned.map((f) => f.text).join("\n")

    // Functions: one catalog entry per `create function`, the same settings in the
    // same order, the body byte for byte. No other function (no overload left by an
    // older signature) exists.
    const functions = yield* sql<{ name: string; config: ReadonlyArray<string> | null; body: string }>`
      select p.proname as name, p.proconfig as config, p.prosrc as body
        from pg_proc p where p.pronamespace = 'taskfiber'::regnamespace`
    const declared = declaredFunctions(functionTexts)
    expect(declared.length).toBeGreaterThanOrEqual(20)
    expect(byName(functions.map((f) => ({ name: f.name, config: f.config ?? [], body: f.body })))).toEqual(byName(declared))

    // Triggers: name, table, function, timing, level, events and whether it has a WHEN.
    const triggers = yield* sql<{ name: string; table: string; fn: string; timing: string; level: string; events: Array<string>; conditional: boolean }>`
      select t.tgname as name, t.tgrelid::regclass::text as table, t.tgfoid::regproc::text as fn,
             case when t.tgtype & 2 > 0 then 'before' else 'after' end as timing,
             case when t.tgtype & 1 > 0 then 'row' else 'statement' end as level,
             array_remove(array[case when t.tgtype & 8 > 0 then 'delete' end, case when t.tgtype & 4 > 0 then 'insert' end,
                                case when t.tgtype & 32 > 0 then 'truncate' end, case when t.tgtype & 16 > 0 then 'update' end], null) as events,
             t.tgqual is not null as conditional
        from pg_trigger t join pg_class c on c.oid = t.tgrelid
       where c.relnamespace = 'taskfiber'::regnamespace and not t.tgisinternal`
    const declaredTrigs = declaredTriggers(functionTexts)
    expect(declaredTrigs.length).toBeGreaterThanOrEqual(6)
    expect(byName(triggers)).toEqual(byName(declaredTrigs))

    // Each repeatable file's bookkeeping names exactly the objects its text declares.
    const recorded = yield* sql<{ name: string; objects: ReadonlyArray<string> }>`
      select name, objects from taskfiber_repeatable_migrations order by name`
    expect(recorded.map((r) => r.name)).toEqual(files.repeatable.map((f) => f.path).sort())
    for (const file of files.repeatable) {
      const objects = recorded.find((r) => r.name === file.path)!.objects
      expect([...objects].map((o) => o.replace(/^routine taskfiber\.(\w+)\(.*$/, "$1").replace(/^trigger (\w+) on .*$/, "$1")).sort())
        .toEqual([...declaredFunctions(file.text).map((f) => f.name), ...declaredTriggers(file.text).map((t) => t.name)].sort())
    }

    // Tables, and their indexes: those the migrations create, plus each table's primary key.
    const tables = [...versionedTexts.matchAll(/create table taskfiber\.(\w+)/g)].map(([, t]) => t!).sort()
    const indexes = yield* sql<{ name: string; table: string; unique: boolean; constraint: boolean }>`
      select c.relname as name, i.indrelid::regclass::text as table, i.indisunique as unique,
             exists (select from pg_constraint k where k.conindid = i.indexrelid) as constraint
        from pg_index i join pg_class c on c.oid = i.indexrelid
       where c.relnamespace = 'taskfiber'::regnamespace`
    const declaredIndexes = [...versionedTexts.matchAll(/create (unique )?index (\w+) on taskfiber\.(\w+)/g)]
      .map(([, unique, name, table]) => ({ name: name!, table: `taskfiber.${table}`, unique: unique !== undefined, constraint: false }))
    const primaryKeys = tables.map((t) => ({ name: `${t}_pkey`, table: `taskfiber.${t}`, unique: true, constraint: true }))
    expect(byName(indexes)).toEqual(byName([...declaredIndexes, ...primaryKeys]))

    // Every other relation: the tables, and sequences behind identity columns only.
    const relations = yield* sql<{ name: string; kind: string; identity: boolean }>`
      select c.relname as name, c.relkind::text as kind,
             exists (select from pg_depend d where d.objid = c.oid and d.deptype = 'i') as identity
        from pg_class c where c.relnamespace = 'taskfiber'::regnamespace and c.relkind <> 'i' order by 1`
    expect(relations.filter((r) => r.kind === "r").map((r) => r.name)).toEqual(tables)
    expect(relations.filter((r) => r.kind !== "r" && !(r.kind === "S" && r.identity))).toEqual([])

    // Types: the enums the migrations create, and the tables' row types (arrays aside).
    const types = yield* sql<{ name: string }>`
      select t.typname as name from pg_type t
       where t.typnamespace = 'taskfiber'::regnamespace and t.typcategory <> 'A'
         and not exists (select from pg_class c where c.oid = t.typrelid and c.relkind = 'r') order by 1`
    expect(types.map((t) => t.name)).toEqual([...versionedTexts.matchAll(/create type taskfiber\.(\w+) as enum/g)].map(([, t]) => t!).sort())
  }).pipe(Effect.scoped))

it.live("migrating again changes nothing: no file applied, every object as it was (oids included)", () =>
  Effect.gen(function*() {
    const sql = yield* emptyDatabase
    const migrate = Migrations.run.pipe(Effect.provideService(SqlClient, sql))
    expect((yield* migrate).length).toBeGreaterThanOrEqual(4)
    const before = yield* snapshot(sql)
    expect(yield* migrate).toEqual([])
    expect(yield* snapshot(sql)).toEqual(before)
  }).pipe(Effect.scoped))

it.live("a changed repeatable file is applied again, it alone; an old signature and a removed file's functions leave nothing behind", () =>
  Effect.gen(function*() {
    const { dir, migrate, sql } = yield* migratedCopy
    const before = yield* snapshot(sql)

    // A comment appended to the file that holds the triggers: that file alone is
    // applied again, and its functions and triggers are made anew.
    const history = join(dir, "functions/history.sql")
    writeFileSync(history, `${readFileSync(history, "utf8")}\n-- a comment\n`)
    yield* bump(dir)
    expect(yield* migrate).toEqual(["functions/history.sql"])
    const after = yield* snapshot(sql)
    const mine = (line: string) => /tasks_after_|task_events_append_only|status_event|trace_headers|refuse_hot_write/.test(line)
    expect(after.filter((l) => !mine(l))).toEqual(before.filter((l) => !mine(l)))
    expect(after.filter(mine).length).toBe(before.filter(mine).length)
    expect(after.filter(mine)).not.toEqual(before.filter(mine)) // new oids
    // The triggers work: an insert writes its history.
    yield* sql`insert into taskfiber.tasks (type) values ('t')`
    expect((yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.task_events`)[0]?.n).toBe(1)

    // A new signature: the old one is gone, not left beside it as an overload.
    const workers = join(dir, "functions/workers.sql")
    writeFileSync(workers, readFileSync(workers, "utf8").replace(
      "worker_seen(p_id text, p_queues text[], p_types text[])", "worker_seen(p_id text, p_queues text[], p_types text[], p_note text default null)"))
    yield* bump(dir)
    expect(yield* migrate).toEqual(["functions/workers.sql"])
    const seen = yield* sql<{ signature: string }>`
      select p.oid::regprocedure::text as signature from pg_proc p
       where p.pronamespace = 'taskfiber'::regnamespace and p.proname = 'worker_seen'`
    expect(seen).toEqual([{ signature: "taskfiber.worker_seen(text,text[],text[],text)" }])

    // A removed file: its functions are dropped with its record.
    unlinkSync(workers)
    yield* bump(dir)
    expect(yield* migrate).toEqual([])
    const left = yield* sql<{ n: number; recorded: number }>`
      select (select count(*)::int from pg_proc p where p.pronamespace = 'taskfiber'::regnamespace
                 and p.proname in ('worker_seen', 'unserved_tasks')) as n,
             (select count(*)::int from taskfiber_repeatable_migrations where name = 'functions/workers.sql') as recorded`
    expect(left[0]).toEqual({ n: 0, recorded: 0 })
    expect(yield* migrate).toEqual([])
  }).pipe(Effect.scoped))

it.live("a database of the pre-release layout is refused, with the reset that works, and left untouched", () =>
  Effect.gen(function*() {
    const sql = yield* emptyDatabase
    // What the pre-release layout left: its schema, and effect/sql's Migrator table
    // recording 001_tables … 011_fencing, with no repeatable bookkeeping beside it.
    yield* sql`create schema taskfiber`
    yield* sql`create table taskfiber.tasks (id uuid primary key)`
    yield* sql`create table taskfiber_migrations (
      migration_id integer primary key, created_at timestamp with time zone not null default now(), name text not null)`
    const old = ["tables", "state_machine", "operations", "hot_path", "dead_index_entries", "plans_for_any_batch",
      "remove_on_complete", "lighter_claim", "quiet_enqueue", "leaner_rows", "fencing"]
    yield* sql`insert into taskfiber_migrations (migration_id, name)
      select n::int, name from unnest(${old}::text[]) with ordinality as o(name, n)`
    const error = yield* Effect.flip(Migrations.run.pipe(Effect.provideService(SqlClient, sql)))
    expect(error._tag).toBe("MigrationFailed")
    expect(error.message).toContain("pre-release schema layout")
    const reset = /`([^`]+)`/.exec(error.message)?.[1]
    expect(reset).toBe("drop schema taskfiber cascade; drop table taskfiber_migrations;")
    const [state] = yield* sql<{ repeatable: boolean; tasks: boolean }>`
      select to_regclass('taskfiber_repeatable_migrations') is not null as repeatable,
             to_regclass('taskfiber.tasks') is not null as tasks`
    expect(state).toEqual({ repeatable: false, tasks: true })
    // The reset it names, then a start: migrated.
    for (const statement of reset!.split(";").map((s) => s.trim()).filter(Boolean)) yield* sql.unsafe(statement)
    expect((yield* Migrations.run.pipe(Effect.provideService(SqlClient, sql))).length).toBeGreaterThanOrEqual(4)
  }).pipe(Effect.scoped))

it.live("a database a newer taskfiber migrated is left as it is; one recording a migration the files lack is refused, naming it", () =>
  Effect.gen(function*() {
    const { dir, migrate, sql } = yield* migratedCopy
    const before = yield* snapshot(sql)
    // A newer release recorded a migration past these files (a rolling deploy): this
    // older one applies nothing, not even its own (older) function files.
    yield* sql`insert into taskfiber_migrations (migration_id, name) values (999, 'from_a_newer_release')`
    const claim = join(dir, "functions/claim.sql")
    writeFileSync(claim, `${readFileSync(claim, "utf8")}\n-- older\n`)
    yield* bump(dir)
    expect(yield* migrate).toEqual([])
    expect(yield* snapshot(sql)).toEqual(before)
    // A recorded migration within the files' numbers that no file is: refused.
    yield* sql`update taskfiber_migrations set name = 'renamed' where migration_id = 1`
    const error = yield* Effect.flip(migrate)
    expect(error._tag).toBe("MigrationFailed")
    expect(error.message).toContain("1_renamed")
  }).pipe(Effect.scoped))

it("schema/revision was written for the repeatable files shipped: a release that changes one raises the revision", () => {
  // The digest, computed here from the files themselves: sha256 over their sorted `path:sha256` lines.
  const root = fileURLToPath(Migrations.schemaDirectory)
  const lines = Migrations.repeatableFolders.flatMap((folder) =>
    (existsSync(join(root, folder)) ? readdirSync(join(root, folder)) : []).filter((n) => n.endsWith(".sql")).map((n) =>
      `${folder}/${n}:${createHash("sha256").update(readFileSync(join(root, folder, n))).digest("hex")}\n`))
  expect(lines.length).toBeGreaterThanOrEqual(3)
  const digest = createHash("sha256").update(lines.sort().join("")).digest("hex")
  const written = SchemaFiles.parseRevision(readFileSync(join(root, SchemaFiles.revisionFile), "utf8"))
  expect(written.digest, "schema/revision was not written for schema/functions/ and schema/views/ as they are: " +
    "run `npm run schema:revision` (scripts/node.sh npm run schema:revision) and commit schema/revision with them").toBe(digest)
})

it.live("scripts/schema-revision.ts raises a schema folder's revision by one and writes its digest; run again, it changes nothing", () =>
  Effect.gen(function*() {
    const dir = yield* schemaCopy
    const script = fileURLToPath(new URL("../../scripts/schema-revision.ts", import.meta.url))
    const run = () => spawnSync(process.execPath, [script, dir], { encoding: "utf8" })
    const revisionOf = () => SchemaFiles.parseRevision(readFileSync(join(dir, SchemaFiles.revisionFile), "utf8"))
    const shipped = revisionOf()
    expect(run().stdout).toContain("up to date")
    expect(revisionOf()).toEqual(shipped)
    const cancel = join(dir, "functions/cancel.sql")
    writeFileSync(cancel, `${readFileSync(cancel, "utf8")}\n-- changed\n`)
    const first = run()
    expect(first.status, first.stderr).toBe(0)
    const files = yield* Migrations.readSchema(dir)
    expect(revisionOf()).toEqual({ revision: shipped.revision + 1, digest: files.digest })
    expect(files.digest).not.toBe(shipped.digest)
    expect(run().stdout).toContain("up to date")
    expect(revisionOf().revision).toBe(shipped.revision + 1)
  }).pipe(Effect.scoped))
