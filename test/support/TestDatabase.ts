/**
 * A fresh, migrated database per test file, so files run in parallel without
 * seeing each other's tasks. Created on the server from globalSetup and dropped
 * (with force) when the layer's scope closes.
 */
import { randomBytes } from "node:crypto"
import { Context, Effect, Layer, Redacted } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { inject } from "vitest"
import * as Database from "../../src/store/Database.ts"
import * as TcpProxy from "./TcpProxy.ts"
import "./globalSetup.ts"

/** The server every test database lives on. */
export const serverUrl = (): string => process.env.DATABASE_URL || inject("databaseUrl")

/** `url` with its database name replaced. */
export const urlForDatabase = (url: string, database: string): string => {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

/** Runs one statement on the server's maintenance database. */
const admin = (statement: string) =>
  Effect.scoped(
    Effect.gen(function*() {
      const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(serverUrl()), maxConnections: 1 }))
      const sql = Context.get(ctx, SqlClient)
      yield* sql.unsafe(statement)
    })
  )

/** Name of a new, empty database: created for the scope, dropped after. */
export const scopedDatabase = Effect.acquireRelease(
  Effect.gen(function*() {
    const name = `tf_test_${randomBytes(6).toString("hex")}`
    yield* admin(`create database ${name}`)
    return name
  }),
  (name) => admin(`drop database if exists ${name} with (force)`).pipe(Effect.ignore)
)

/** A migrated client on a database of its own. */
export const layer = (options: Database.ClientOptions = {}) =>
  Layer.unwrap(
    Effect.map(scopedDatabase, (name) =>
      Database.layerUrl(Redacted.make(urlForDatabase(serverUrl(), name)), { poolMax: 20, poolMin: 2, ...options })
    )
  )

/** A database of its own reached through a TCP proxy the test can cut and restore (an outage on demand): its URL and the proxy. */
export const scopedDatabaseBehindProxy = Effect.gen(function*() {
  const name = yield* scopedDatabase
  const server = new URL(serverUrl())
  const proxy = yield* TcpProxy.make({ host: server.hostname, port: Number(server.port || 5432) })
  const url = new URL(urlForDatabase(serverUrl(), name))
  url.hostname = "127.0.0.1"
  url.port = String(proxy.port)
  return { proxy, url: url.toString() }
})
