/**
 * The PostgreSQL connection: a `PgClient` (which is also the `SqlClient`) from
 * `DATABASE_URL`, or, when it is absent, from an embedded PostgreSQL started for
 * the layer's lifetime. Migrations run before the layer is handed out.
 */
import { existsSync } from "node:fs"
import { hostname } from "node:os"
import { dirname, isAbsolute, join, resolve } from "node:path"
import { Config, Effect, Layer, Option, Redacted, Schema } from "effect"
import { PgClient } from "@effect/sql-pg"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"
import * as Migrations from "./Migrations.ts"
import * as Warmup from "./Warmup.ts"
import { redactSecrets } from "../domain/Redact.ts"
import { IdleWork } from "../coordination/IdleWork.ts"

/** Database settings, read from the environment. */
export interface DatabaseConfig {
  /** `DATABASE_URL`; none → embedded PostgreSQL. */
  readonly url: Option.Option<Redacted.Redacted<string>>
  /** `DB_POOL_MAX`: connections in the pool. */
  readonly poolMax: number
  /** `DB_POOL_MIN`: connections kept open (and warmed) while idle; default 4 (at most `DB_POOL_MAX`). */
  readonly poolMin: number
  /** `EMBEDDED_PG_DIR`: data folder of the embedded server, relative to the project root (see {@link embeddedDataDir}). */
  readonly embeddedDir: string
  /** `EMBEDDED_PG_PORT`: port of the embedded server. */
  readonly embeddedPort: number
}

/** Reads {@link DatabaseConfig} from the environment, with its defaults. */
export const config: Config.Config<DatabaseConfig> = Config.all({
  // An empty DATABASE_URL counts as unset, as shells and compose files produce them.
  url: Config.option(Config.Redacted("DATABASE_URL")).pipe(
    Config.map(Option.filter((url) => Redacted.value(url).trim() !== ""))
  ),
  poolMax: Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 })), "DB_POOL_MAX").pipe(Config.withDefault(10)),
  // Unset: -1, the default (see ClientOptions.poolMin).
  poolMin: Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 })), "DB_POOL_MIN").pipe(Config.withDefault(-1)),
  embeddedDir: Config.String("EMBEDDED_PG_DIR").pipe(Config.withDefault(".data/postgres")),
  embeddedPort: Config.Port("EMBEDDED_PG_PORT").pipe(Config.withDefault(54329))
})

/**
 * The embedded server's data folder: `EMBEDDED_PG_DIR` as given when absolute,
 * else from the project root — the nearest folder from `cwd` up that holds a
 * `package.json` (`cwd` itself when none does). A command run from a subfolder
 * then finds the same database, not a new empty one.
 */
export const embeddedDataDir = (dir: string, cwd: string = process.cwd()): string => {
  if (isAbsolute(dir)) return dir
  for (let at = resolve(cwd); ; at = dirname(at)) {
    if (existsSync(join(at, "package.json"))) return resolve(at, dir)
    if (dirname(at) === at) return resolve(cwd, dir)
  }
}

/** Pool options beyond the URL. */
export interface ClientOptions {
  /** Default 10. */
  readonly poolMax?: number
  /**
   * Connections kept open while idle, each warmed once (see Warmup). Default 4
   * (at most `poolMax`): a supervisor's hot statements — its claim, its completion
   * writer, its heartbeat or reaper — are at most three at once, and one more serves
   * an enqueue, so none of them meets a connection opened on demand. Warming all
   * ten of a default pool took 100 ms of start-up against 50 for four, and the
   * pickup latency was the same. 0 starts a worker facing a backlog sooner (a
   * 20,000-task drain ended 54–90 ms earlier) at the price of cold first calls. A
   * negative value means the default.
   */
  readonly poolMin?: number
  /**
   * The pool's `application_name`; default {@link nextApplicationName}'s
   * `taskfiber <hostname> <pid>`, unique to the pool, so that the health sampler
   * finds this pool's connections in `pg_stat_activity` (and an operator finds the
   * process behind a connection).
   */
  readonly applicationName?: string
  /**
   * When the kept connections are warmed: `"eager"` (the default) before the layer
   * is handed out; `"when-idle"` by the first supervisor that finds nothing to
   * claim (the layer provides the warm-up as the runtime's IdleWork), which
   * `Taskfiber.layer` uses: a worker that starts facing a backlog warms its
   * connections by using them, and a warm-up at start cost it the warm-up's whole
   * time and CPU (a 20,000-task drain finished 15% sooner without it).
   */
  readonly warmUp?: "eager" | "when-idle"
}

/** The pool's sizes from `options`, defaults applied (see {@link ClientOptions}). */
export const poolSizes = (options: Pick<ClientOptions, "poolMax" | "poolMin">): { readonly poolMax: number; readonly poolMin: number } => {
  const poolMax = options.poolMax ?? 10
  return { poolMax, poolMin: Math.min(poolMax, options.poolMin === undefined || options.poolMin < 0 ? 4 : options.poolMin) }
}

/** Pools given a default name by this process so far. */
let namedPools = 0

/** PostgreSQL keeps the first 63 bytes of an `application_name` (NAMEDATALEN - 1). */
const applicationNameBytes = 63

/**
 * A new pool's default `application_name`: `taskfiber <hostname> <pid>`, and
 * `/<n>` after the pid for the n-th pool of the same process (tests, an
 * application embedding two runtimes), the hostname shortened so the whole fits in
 * 63 bytes with the pid whole (a longer name would be cut by the server and no
 * longer match).
 */
export const nextApplicationName = (host: string = hostname(), pid: number = process.pid): string => {
  namedPools++
  const prefix = "taskfiber "
  const suffix = ` ${pid}${namedPools > 1 ? `/${namedPools}` : ""}`
  const room = applicationNameBytes - Buffer.byteLength(prefix) - Buffer.byteLength(suffix)
  let shortHost = host.replace(/[^\x20-\x7e]/g, "?")
  if (shortHost.length > room) shortHost = shortHost.slice(0, room)
  return `${prefix}${shortHost}${suffix}`
}

/** A migrated client for a server at `url`, its kept connections warmed (or to be, see `warmUp`). */
export const layerUrl = (
  url: Redacted.Redacted<string>,
  options: ClientOptions = {}
): Layer.Layer<PgClient.PgClient | SqlClient | IdleWork, Migrations.MigrationFailed | SqlError> => {
  const { poolMax, poolMin } = poolSizes(options)
  const warm = Warmup.warmConnections(poolMin)
  return Layer.effect(
    IdleWork,
    Effect.andThen(
      Migrations.run,
      options.warmUp === "when-idle"
        ? Effect.flatMap(Effect.context<SqlClient>(), (context) =>
          Effect.map(Effect.cached(Effect.provideContext(warm, context)), (once) => IdleWork.of({ run: once })))
        : Effect.as(warm, IdleWork.of({ run: Effect.void }))
    )
  ).pipe(
    Layer.provideMerge(Layer.unwrap(Effect.sync(() =>
      PgClient.layer({
        url,
        maxConnections: poolMax,
        minConnections: poolMin,
        applicationName: options.applicationName ?? nextApplicationName()
      })
    )))
  )
}

/**
 * The database from {@link config}: `DATABASE_URL` when set, else an embedded
 * PostgreSQL in `EMBEDDED_PG_DIR` (logged, so a newcomer knows where the data is).
 * `overrides` replace the configured pool sizes (a one-shot command keeps no idle
 * connections).
 */
export const layerWith = (overrides: Pick<ClientOptions, "poolMax" | "poolMin" | "warmUp"> = {}): Layer.Layer<
  PgClient.PgClient | SqlClient | IdleWork,
  Migrations.MigrationFailed | SqlError | EmbeddedPostgres.EmbeddedPostgresError | Config.ConfigError
> =>
  Layer.unwrap(
    Effect.gen(function*() {
      const cfg = yield* config
      const pool = { poolMax: cfg.poolMax, poolMin: cfg.poolMin, ...overrides }
      if (Option.isSome(cfg.url)) {
        yield* Effect.logInfo("using PostgreSQL", { url: redactSecrets(Redacted.value(cfg.url.value)) })
        return layerUrl(cfg.url.value, pool)
      }
      const embedded = yield* EmbeddedPostgres.acquire({
        dataDir: embeddedDataDir(cfg.embeddedDir),
        port: cfg.embeddedPort,
        persistent: true
      })
      // Said even by the quiet one-shot commands: an enqueue run where no taskfiber
      // ran before puts its task into a new database no service reads.
      if (embedded.created) {
        yield* Effect.logWarning("created a new embedded PostgreSQL database (no taskfiber used this folder before)", {
          dataDir: embedded.dataDir
        })
      }
      yield* Effect.logInfo(
        embedded.started
          ? "using embedded PostgreSQL (DATABASE_URL not set)"
          : "using the embedded PostgreSQL already running on this data folder (DATABASE_URL not set)",
        { dataDir: embedded.dataDir, port: embedded.port }
      )
      return layerUrl(embedded.url, pool)
    })
  )

/** {@link layerWith} the configured pool sizes. */
export const layer = layerWith()
