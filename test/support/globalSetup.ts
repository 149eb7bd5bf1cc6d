/**
 * Gives every test worker a PostgreSQL server: `DATABASE_URL` when set (CI), else an
 * embedded PostgreSQL started here for the whole run and removed afterwards.
 * Test files then create their own databases on it (see TestDatabase.ts).
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import type { TestProject } from "vitest/node"
import * as EmbeddedPostgres from "../../src/store/EmbeddedPostgres.ts"
import { freePort } from "./freePort.ts"

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string
  }
}


export default async function setup(project: TestProject) {
  if (process.env.DATABASE_URL) {
    project.provide("databaseUrl", process.env.DATABASE_URL)
    return
  }
  const scope = Scope.makeUnsafe()
  const port = await freePort()
  const server = await Effect.runPromise(
    EmbeddedPostgres.acquire({ dataDir: `.data/test-postgres-${process.pid}`, port, persistent: false }).pipe(
      Scope.provide(scope)
    )
  )
  project.provide("databaseUrl", Redacted.value(server.url))
  return async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
