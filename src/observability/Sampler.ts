/**
 * The sampler: the one place that reads the SQL-based numbers — queue depths,
 * the oldest ready task, leases, dead letters, the outbox, this instance's pool,
 * the server's connections and cache — every `SAMPLE_INTERVAL` (10 s), as a
 * background duty. It keeps the latest sample for Health and sets the gauges from
 * it; a scrape of /metrics reads the gauges and never the database, so scrapers
 * cannot load it.
 *
 * It reads on a connection of its own (`application_name` `taskfiber sampler`),
 * not through the pool: when the pool is exhausted is when the numbers matter.
 * The pool is measured from the outside:
 *
 * - connections in use (active or idle in a transaction) and idle, from
 *   `pg_stat_activity` by the pool's `application_name` (unique to the pool, see
 *   `Database.nextApplicationName`): @effect/sql-pg's pool exposes no statistics
 *   (its effect `Pool` is private to `PgPool.make`);
 * - a probe, `select 1` through the pool with a timeout: its round trip includes
 *   the wait for a connection, which stands in for the number of fibers waiting
 *   for one (not available either); no answer in time is a finding of its own;
 * - the mean time the statements running on the pool's connections have run so
 *   far, which with the probe's round trip is the "query time" Health judges.
 *
 * The cache hit ratio is over the blocks accessed since the previous sample (the
 * first: since the server's statistics were reset), so a cache that just went cold
 * shows within one interval.
 */
import { Cause, Clock, type Config, Context, Data, Deferred, Duration, Effect, Exit, Layer, Metric, Option, PubSub, Redacted, Scope, Semaphore } from "effect"

import { PgClient } from "@effect/sql-pg"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Reactivity from "effect/reactivity/Reactivity"
import { type HealthSample, type PoolSample, probeMs, type QueueDepth, queryTimeMs } from "../domain/HealthPolicy.ts"
import type { PriorityBand } from "../domain/Priority.ts"
import { redactSecrets } from "../domain/Redact.ts"
import * as BackgroundLoop from "../runtime/BackgroundLoop.ts"
import * as RuntimeConfig from "../runtime/RuntimeConfig.ts"
import { fromUnknown } from "../store/DatabaseError.ts"

/** What the sampler read, when. */
export interface Sampled {
  /** The numbers; no Kafka part (Health adds it) and no age. */
  readonly sample: HealthSample
  /** When it was taken, by the database clock. */
  readonly sampledAt: Date
  /** When it was taken, by this process's clock (ms): its age for Health. */
  readonly takenAtMillis: number
}

/** A sample could not be taken: the database's one-line reason, secrets redacted. */
export class SampleFailed extends Data.TaggedError("SampleFailed")<{ readonly message: string; readonly cause?: unknown }> {}

/** The sampler's settings. */
export interface SamplerConfig {
  /** `SAMPLE_INTERVAL`: the pause between two samples (default 10 s). */
  readonly interval: Duration.Duration
  /** How long the probe waits for its `select 1` through the pool (default 2 s). */
  readonly probeTimeout: Duration.Duration
}

/** The defaults. */
export const defaults: SamplerConfig = { interval: Duration.seconds(10), probeTimeout: Duration.seconds(2) }

/** `SAMPLE_INTERVAL`, bounded as the runtime's other durations. */
export const intervalConfig = RuntimeConfig.duration("SAMPLE_INTERVAL", defaults.interval)

/**
 * The longest a sample's statements (or opening its connection) may take: longer,
 * and the sample fails (the statement is cancelled on the server) and the next
 * starts on a new connection.
 */
const statementTimeout = Duration.seconds(5)

// ---------------------------------------------------------------------------
// the statements

interface DepthRow {
  readonly queue: string
  readonly status: QueueDepth["status"]
  readonly band: PriorityBand
  readonly tasks: number
  readonly ready: number
  readonly oldest_ready_ms: number | null
}

/**
 * Tasks waiting or running by queue, status and priority band (Priority.bandOf's
 * bands), with the due ones and the age of the oldest due one by the database
 * clock. The two halves are the two partial indexes' predicates, so neither reads
 * a finished task through an index (tasks_claim_idx, tasks_running_idx); where the
 * waiting tasks are spread over the whole table the planner reads it instead.
 * Measured on PostgreSQL 15 with 100,000 tasks, 16,000 of them waiting or running
 * and spread over all 3,655 pages: 15–22 ms (a scan of the table, or a bitmap scan
 * of tasks_claim_idx); the running half by its index, 0.4 ms.
 */
const depthStatement = (sql: SqlClient) =>
  sql<DepthRow>`
    select queue, status::text as status,
           case when priority > 0 then 'high' when priority < 0 then 'low' else 'normal' end as band,
           count(*)::int as tasks,
           (count(*) filter (where status <> 'running' and run_at <= now()))::int as ready,
           (extract(epoch from now() - min(run_at) filter (where status <> 'running' and run_at <= now())) * 1000)::float8 as oldest_ready_ms
      from (select queue, status, priority, run_at from taskfiber.tasks where status in ('queued', 'retrying')
            union all
            select queue, status, priority, run_at from taskfiber.tasks where status = 'running') t
     group by 1, 2, 3`

interface TotalsRow {
  readonly at: Date
  readonly expired: number
  readonly dead_letters: number
  readonly outbox: number
  readonly blks_hit: number
  readonly blks_read: number
  readonly connections: number
  readonly max_connections: number
  readonly in_use: number
  readonly idle: number
  readonly active: number
  readonly active_mean_ms: number
  readonly paused: ReadonlyArray<string>
}

/**
 * Everything else in one row, each part by an index or a system view. Measured on
 * PostgreSQL 15 (100,000 tasks, 5,000 dead letters all in the last hour, 100,000
 * outbox rows of which 1,000 unpublished): 1.3 ms in all — expired leases by
 * tasks_running_idx (index only, 0.2 ms), dead letters by dead_letters_created_idx
 * (or a scan of the table while all are recent, 0.8 ms), the outbox backlog by
 * outbox_unpublished_idx (index only, 0.1 ms), the paused queues from their
 * table (a row per pause), the rest from pg_stat_database and
 * pg_stat_activity (one pass over the server's backends each). `pool` is the
 * pool's application_name (no pool: none matches).
 */
const totalsStatement = (sql: SqlClient, pool: string) =>
  sql<TotalsRow>`
    select now() as at,
           (select count(*) from taskfiber.tasks where status = 'running' and lease_expires_at < now())::int as expired,
           (select count(*) from taskfiber.dead_letters where created_at >= now() - interval '1 hour')::int as dead_letters,
           (select count(*) from taskfiber.outbox where published_at is null)::int as outbox,
           coalesce((select blks_hit from pg_stat_database where datname = current_database()), 0)::float8 as blks_hit,
           coalesce((select blks_read from pg_stat_database where datname = current_database()), 0)::float8 as blks_read,
           (select count(*) from pg_stat_activity where backend_type = 'client backend')::int as connections,
           current_setting('max_connections')::int as max_connections,
           (select coalesce(array_agg(queue order by queue), '{}') from taskfiber.paused_queues) as paused,
           p.in_use, p.idle, p.active, p.active_mean_ms
      -- A LISTEN connection (the wake-ups', the relay's) is taken from the pool for
      -- good and idles between notifications: in use, or a pool with all its other
      -- connections busy would read 90 %.
      from (select (count(*) filter (where state in ('active', 'idle in transaction', 'idle in transaction (aborted)')
                                        or (state = 'idle' and query ilike 'listen %')))::int as in_use,
                   (count(*) filter (where state = 'idle' and query not ilike 'listen %'))::int as idle,
                   (count(*) filter (where state = 'active'))::int as active,
                   coalesce(avg(extract(epoch from now() - query_start) * 1000) filter (where state = 'active'), 0)::float8 as active_mean_ms
              from pg_stat_activity
             where application_name = ${pool} and datname = current_database() and backend_type = 'client backend') p`

/**
 * The queues' part of a sample alone ({@link depthStatement}): what an operator's
 * `queues` shows (src/admin/Admin.ts), read by the same statement as the gauges.
 */
export const readDepth = (sql: SqlClient): Effect.Effect<Pick<HealthSample, "depth" | "oldestReady">, SqlError> =>
  Effect.map(depthStatement(sql), (rows) => {
    const oldest = new Map<string, number>()
    for (const d of rows) {
      if (d.oldest_ready_ms !== null) oldest.set(d.queue, Math.max(oldest.get(d.queue) ?? 0, Math.max(0, d.oldest_ready_ms)))
    }
    return {
      depth: rows.map((d) => ({ queue: d.queue, status: d.status, band: d.band, tasks: d.tasks, ready: d.ready })),
      oldestReady: [...oldest].map(([queue, ageMs]) => ({ queue, ageMs }))
    }
  })

/** The database's reason for a failure, one line, secrets redacted. */
const reasonOf = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const classified = fromUnknown(error)
  if (classified !== undefined) return classified.message
  if (Cause.isTimeoutError(error)) return `the database did not answer the sampler within ${Duration.format(statementTimeout)}`
  return redactSecrets(error instanceof Error ? error.message : String(error))
}

/** The block counters a cache ratio is computed from. */
interface BlockCounters {
  readonly hits: number
  readonly reads: number
}

/**
 * One sample on `sql` (any connection: the CLI's own, or the sampler's), with
 * `pool` the pool measured (its probe already taken), or none. `previous` block
 * counters make the cache part a difference; the new counters are returned.
 */
export const read = (
  sql: SqlClient,
  options: { readonly pool?: { readonly applicationName: string; readonly max: number; readonly probe: PoolSample["probe"] }; readonly previous?: BlockCounters } = {}
): Effect.Effect<{ readonly sampled: Omit<Sampled, "takenAtMillis">; readonly counters: BlockCounters }, SampleFailed> =>
  Effect.gen(function*() {
    const { depth, oldestReady } = yield* readDepth(sql)
    const [totals] = yield* totalsStatement(sql, options.pool?.applicationName ?? "")
    const t = totals!
    const counters = { hits: t.blks_hit, reads: t.blks_read }
    const prev = options.previous
    // A reset of the statistics makes the counters smaller: count from it.
    const cache = prev !== undefined && counters.hits >= prev.hits && counters.reads >= prev.reads
      ? { hits: counters.hits - prev.hits, reads: counters.reads - prev.reads }
      : counters
    const sample: HealthSample = {
      depth,
      oldestReady,
      pausedQueues: t.paused,
      expiredLeases: t.expired,
      deadLettersLastHour: t.dead_letters,
      outboxBacklog: t.outbox,
      cache,
      server: { connections: t.connections, maxConnections: t.max_connections },
      ...(options.pool === undefined ? {} : {
        pool: {
          inUse: t.in_use,
          idle: t.idle,
          max: options.pool.max,
          probe: options.pool.probe,
          active: { statements: t.active, meanMs: t.active_mean_ms }
        }
      })
    }
    return { sampled: { sample, sampledAt: t.at }, counters }
  }).pipe(
    Effect.timeout(statementTimeout),
    Effect.catchCause((cause) => Effect.fail(new SampleFailed({ message: reasonOf(cause), cause: Cause.squash(cause) })))
  )

/** `select 1` through `pool`, timed, within `timeout` (see module doc). */
export const probe = (pool: SqlClient, timeout: Duration.Duration): Effect.Effect<PoolSample["probe"]> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeNanos
    const answered = yield* pool`select 1`.pipe(Effect.timeoutOption(timeout), Effect.exit)
    const ms = Number((yield* Clock.currentTimeNanos) - start) / 1e6
    // A failed probe (a lost connection) is no answer either.
    return answered._tag === "Success" && Option.isSome(answered.value)
      ? { _tag: "Answered" as const, ms }
      : { _tag: "TimedOut" as const, timeoutMs: Duration.toMillis(timeout) }
  })

// ---------------------------------------------------------------------------
// gauges

/** The gauges the sampler sets (what /metrics serves of it). */
export const gauges = {
  queueDepth: Metric.gauge("taskfiber_queue_depth", { description: "Tasks waiting or running, by queue, status and priority band" }),
  oldestReadyAge: Metric.gauge("taskfiber_oldest_ready_age_seconds", { description: "Age of the oldest task due to run, by queue" }),
  tasksRunning: Metric.gauge("taskfiber_tasks_running", { description: "Running tasks, all instances" }),
  expiredLeases: Metric.gauge("taskfiber_expired_leases", { description: "Running tasks whose lease has expired" }),
  deadLetters: Metric.gauge("taskfiber_dead_letters_last_hour", { description: "Dead letters written in the last hour" }),
  outboxBacklog: Metric.gauge("taskfiber_outbox_backlog", { description: "Status events not yet relayed to Kafka" }),
  poolConnections: Metric.gauge("taskfiber_pool_connections", { description: "This instance's pool connections, by state" }),
  poolConnectionsMax: Metric.gauge("taskfiber_pool_connections_max", { description: "DB_POOL_MAX" }),
  poolProbe: Metric.gauge("taskfiber_pool_probe_seconds", { description: "Round trip of select 1 through the pool, waiting included (the timeout when none answered)" }),
  queryTime: Metric.gauge("taskfiber_db_query_time_seconds", { description: "Mean time of the statements running on the pool, with the probe" }),
  cacheHitRatio: Metric.gauge("taskfiber_db_cache_hit_ratio", { description: "Blocks found in shared buffers over blocks accessed since the previous sample" }),
  dbConnections: Metric.gauge("taskfiber_db_connections", { description: "The server's client connections" }),
  dbMaxConnections: Metric.gauge("taskfiber_db_max_connections", { description: "The server's max_connections" })
} as const

/**
 * Sets the gauges from `sample`. A labelled series seen before and absent now
 * (a queue that emptied) is set to 0, not left at its last value: `seen` holds
 * the series set last time, and is updated.
 */
const setGauges = (sample: HealthSample, seen: Map<string, Metric.Gauge<number>>): Effect.Effect<void> =>
  Effect.suspend(() => {
    const now = new Map<string, readonly [Metric.Gauge<number>, number]>()
    const labelled = (gauge: Metric.Gauge<number>, attributes: Record<string, string>, value: number) => {
      const key = `${gauge.id}\u0000${JSON.stringify(attributes)}`
      now.set(key, [seen.get(key) ?? Metric.withAttributes(gauge, attributes), value])
    }
    for (const d of sample.depth) {
      labelled(gauges.queueDepth, { queue: d.queue, status: d.status, priority_band: d.band }, d.tasks)
    }
    for (const o of sample.oldestReady) labelled(gauges.oldestReadyAge, { queue: o.queue }, o.ageMs / 1000)
    const updates: Array<Effect.Effect<void>> = []
    for (const [key, gauge] of seen) if (!now.has(key)) updates.push(Metric.update(gauge, 0))
    seen.clear()
    for (const [key, [gauge, value]] of now) {
      seen.set(key, gauge)
      updates.push(Metric.update(gauge, value))
    }
    const running = sample.depth.reduce((n, d) => n + (d.status === "running" ? d.tasks : 0), 0)
    updates.push(
      Metric.update(gauges.tasksRunning, running),
      Metric.update(gauges.expiredLeases, sample.expiredLeases),
      Metric.update(gauges.deadLetters, sample.deadLettersLastHour),
      Metric.update(gauges.outboxBacklog, sample.outboxBacklog),
      Metric.update(gauges.dbConnections, sample.server.connections),
      Metric.update(gauges.dbMaxConnections, sample.server.maxConnections)
    )
    const accesses = sample.cache.hits + sample.cache.reads
    if (accesses > 0) updates.push(Metric.update(gauges.cacheHitRatio, sample.cache.hits / accesses))
    const pool = sample.pool
    if (pool !== undefined) {
      updates.push(
        Metric.update(Metric.withAttributes(gauges.poolConnections, { state: "in_use" }), pool.inUse),
        Metric.update(Metric.withAttributes(gauges.poolConnections, { state: "idle" }), pool.idle),
        Metric.update(gauges.poolConnectionsMax, pool.max),
        Metric.update(gauges.poolProbe, probeMs(pool) / 1000),
        Metric.update(gauges.queryTime, queryTimeMs(pool) / 1000)
      )
    }
    return Effect.all(updates, { discard: true })
  })

// ---------------------------------------------------------------------------
// the service

/** The sampler. */
export class Sampler extends Context.Service<Sampler, {
  /** The latest sample, none before the first. */
  readonly latest: Effect.Effect<Option.Option<Sampled>>
  /** Why the latest attempt failed, none when it succeeded. */
  readonly lastError: Effect.Effect<Option.Option<string>>
  /** Completes once the first attempt has ended (successful or not). */
  readonly started: Effect.Effect<void>
  /** Takes a sample now (between the loop's, never at once with one), as the loop does. */
  readonly sampleNow: Effect.Effect<Sampled, SampleFailed>
  /** Every sample taken, from subscription on (scoped). */
  readonly samples: Effect.Effect<PubSub.Subscription<Sampled>, never, Scope.Scope>
  readonly config: SamplerConfig
}>()("taskfiber/Sampler") {}

/** The sampler's own connection's `application_name`. */
export const applicationName = "taskfiber sampler"

/** The pool's `application_name`, as PostgreSQL records it for its connections. */
const poolApplicationName = (config: PgClient.PgClientConfig): string => {
  if (config.applicationName !== undefined) return config.applicationName
  const fromUrl = config.url === undefined ? null : new URL(Redacted.value(config.url) as string).searchParams.get("application_name")
  return fromUrl ?? "@effect/sql-pg"
}

/**
 * The sampler of the pool this layer gets (its `PgClient`), sampling from the
 * layer's start until its scope closes; `options` over `SAMPLE_INTERVAL` and the
 * defaults.
 */
export const layer = (options: Partial<SamplerConfig> = {}): Layer.Layer<Sampler, Config.ConfigError, PgClient.PgClient> =>
  Layer.effect(Sampler, Effect.gen(function*() {
    const config: SamplerConfig = {
      interval: options.interval ?? (yield* intervalConfig),
      probeTimeout: options.probeTimeout ?? defaults.probeTimeout
    }
    const pg = yield* PgClient.PgClient
    const poolName = poolApplicationName(pg.config)
    const poolMax = (pg.config as PgClient.PgPoolConfig).maxConnections ?? 10
    const scope = yield* Effect.scope
    const lock = yield* Semaphore.make(1)
    const hub = yield* PubSub.sliding<Sampled>(16)
    const firstAttempt = yield* Deferred.make<void>()
    let latest: Option.Option<Sampled> = Option.none()
    let lastError: Option.Option<string> = Option.none()
    let counters: BlockCounters | undefined
    const seen = new Map<string, Metric.Gauge<number>>()

    // The sampler's connection: opened when first needed, closed after a failed
    // sample (the next opens a new one, so a lost connection heals). Its scopes are
    // children of one made before the loop starts, so that at the layer's close the
    // loop is stopped before its connection goes (a sample in flight at shutdown
    // would otherwise fail and be logged as an error).
    const connections = yield* Scope.fork(scope)
    let own: { readonly client: SqlClient; readonly scope: Scope.Closeable } | undefined
    const connection: Effect.Effect<SqlClient, SampleFailed> = Effect.suspend(() => {
      if (own !== undefined) return Effect.succeed(own.client)
      return Effect.gen(function*() {
        const connScope = yield* Scope.fork(connections)
        const client = yield* PgClient.makeClient({ ...pg.config, applicationName }).pipe(
          Scope.provide(connScope),
          Effect.provide(Reactivity.layer),
          Effect.tapCause(() => Scope.close(connScope, Exit.void))
        )
        own = { client, scope: connScope }
        return client
      }).pipe(Effect.timeout(statementTimeout), Effect.catchCause((cause) => Effect.fail(new SampleFailed({ message: reasonOf(cause), cause: Cause.squash(cause) }))))
    })
    const dropConnection = Effect.suspend(() => {
      const current = own
      own = undefined
      return current === undefined ? Effect.void : Scope.close(current.scope, Exit.void)
    })

    const take = lock.withPermit(Effect.gen(function*() {
      const probed = yield* probe(pg, config.probeTimeout)
      const sql = yield* connection
      const { counters: next, sampled } = yield* read(sql, {
        pool: { applicationName: poolName, max: poolMax, probe: probed },
        ...(counters === undefined ? {} : { previous: counters })
      })
      counters = next
      const result: Sampled = { ...sampled, takenAtMillis: yield* Clock.currentTimeMillis }
      latest = Option.some(result)
      lastError = Option.none()
      yield* setGauges(result.sample, seen)
      yield* PubSub.publish(hub, result)
      return result
    }).pipe(
      Effect.tapError((e) =>
        Effect.andThen(dropConnection, Effect.sync(() => {
          lastError = Option.some(e.message)
        }))
      ),
      Effect.onExit(() => Deferred.succeed(firstAttempt, undefined))
    ))
    yield* BackgroundLoop.start({ name: "sampler", step: take, every: config.interval }, scope)
    return Sampler.of({
      latest: Effect.sync(() => latest),
      lastError: Effect.sync(() => lastError),
      started: Deferred.await(firstAttempt),
      sampleNow: take,
      samples: PubSub.subscribe(hub),
      config
    })
  }))
