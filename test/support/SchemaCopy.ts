/**
 * Fixtures of the migration tests: an empty database of a test's own, and a copy
 * of schema/ (one release's files) to edit, bump and migrate from.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { expect } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { PgClient } from "@effect/sql-pg"
import * as Migrations from "../../src/store/Migrations.ts"
import * as SchemaFiles from "../../src/store/SchemaFiles.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** A client on a new, empty database of its own. */
export const emptyDatabase = Effect.gen(function*() {
  const name = yield* TestDatabase.scopedDatabase
  const url = Redacted.make(TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name))
  return Context.get(yield* Layer.build(PgClient.layer({ url, maxConnections: 2 })), SqlClient)
})

/** A copy of schema/ in a temporary folder, removed with the scope: one release's files. */
export const schemaCopy = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(join(tmpdir(), "taskfiber-schema-"))
    cpSync(fileURLToPath(Migrations.schemaDirectory), dir, { recursive: true })
    return dir
  }),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Replaces text in a file of a schema copy (the text must be there). */
export const edit = (dir: string, path: string, from: string, to: string) => {
  const file = join(dir, path)
  const text = readFileSync(file, "utf8")
  expect(text).toContain(from)
  writeFileSync(file, text.replace(from, to))
}

/** Raises the revision of a schema copy, as `npm run schema:revision` does. */
export const bump = (dir: string) => Effect.promise(() => SchemaFiles.bumpRevision(dir))

/** An empty database migrated from a fresh copy of schema/: `migrate` runs the migrator from that copy again. */
export const migratedCopy = Effect.gen(function*() {
  const sql = yield* emptyDatabase
  const dir = yield* schemaCopy
  const migrate = Migrations.runFrom(dir).pipe(Effect.provideService(SqlClient, sql))
  yield* migrate
  return { sql, dir, migrate }
})
