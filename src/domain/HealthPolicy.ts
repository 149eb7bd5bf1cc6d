/**
 * Health scoring: a sample of the runtime's numbers in, a status and findings in
 * words out, each non-healthy finding with what to change. Operators read it at
 * 3 a.m., so a finding names the number, the limit it crossed and the setting that
 * moves it; a check without data (no Kafka configured, too few block reads to
 * judge a cache) is listed as unmeasured, never raised as an alarm.
 *
 * Each check has three thresholds, degraded, unhealthy and critical. A value at a
 * threshold is at that level (`>=` where higher is worse, `<=` where lower is, as
 * for the cache hit ratio). A check's level is the worst threshold its value
 * reaches, so making a value worse never improves its status, whatever the
 * thresholds; the report's status is its worst finding's.
 *
 * Pure: the sampler measures, this judges.
 *
 * @since 0.1.0
 */
import type { PriorityBand } from "./Priority.ts"

/**
 * The statuses, best first (their order is their severity).
 *
 * @since 0.1.0
 */
export const statuses = ["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"] as const

/**
 * How healthy something is.
 *
 * @since 0.1.0
 */
export type HealthStatus = typeof statuses[number]

/**
 * The severity of `status`: 0 for HEALTHY up to 3 for CRITICAL (the CLI's exit code).
 *
 * @since 0.1.0
 */
export const severity = (status: HealthStatus): number => statuses.indexOf(status)

/**
 * The worse of the statuses (HEALTHY for none).
 *
 * @since 0.1.0
 */
export const worst = (all: Iterable<HealthStatus>): HealthStatus => {
  let at = 0
  for (const s of all) at = Math.max(at, severity(s))
  return statuses[at]!
}

/**
 * The three thresholds of one check, in the check's unit.
 *
 * @since 0.1.0
 */
export interface Levels {
  readonly degraded: number
  readonly unhealthy: number
  readonly critical: number
}

/**
 * The checks.
 *
 * @since 0.1.0
 */
export type Check =
  | "pool_usage"
  | "pool_probe"
  | "query_time"
  | "cache_hit"
  | "ready_depth"
  | "oldest_ready"
  | "expired_leases"
  | "dead_letters"
  | "outbox_backlog"
  | "server_connections"
  | "kafka_connection"
  | "kafka_lag"
  | "sample_age"
  | "database"

/**
 * The thresholds of every check that has them (`pool_probe` and `sample_age` are
 * judged by the sampler's own timeout and interval).
 *
 * @since 0.1.0
 */
export interface Thresholds {
  /** Pool connections in use, % of DB_POOL_MAX. */
  readonly poolUsage: Levels
  /** Mean time of the statements running on the pool and of the probe, ms. */
  readonly queryTime: Levels
  /** Blocks found in shared buffers, % of blocks read (lower is worse). */
  readonly cacheHit: Levels
  /** Tasks ready to run now (queued or retrying, due), all queues. */
  readonly readyDepth: Levels
  /** Age of the oldest ready task, ms. */
  readonly oldestReady: Levels
  /** Running tasks whose lease has expired. */
  readonly expiredLeases: Levels
  /** Dead letters written in the last hour. */
  readonly deadLetters: Levels
  /** Status events not yet relayed to Kafka. */
  readonly outboxBacklog: Levels
  /** The server's client connections, % of max_connections. */
  readonly serverConnections: Levels
  /** Messages of this instance's partitions not consumed yet. */
  readonly kafkaLag: Levels
  /** How long the consumer has not been in its group, ms. */
  readonly kafkaDisconnected: Levels
}

/**
 * The unit of each check's value, as a report prints it.
 *
 * @since 0.1.0
 */
export const units: { readonly [C in Check]: "%" | "ms" | "" } = {
  pool_usage: "%",
  pool_probe: "ms",
  query_time: "ms",
  cache_hit: "%",
  ready_depth: "",
  oldest_ready: "ms",
  expired_leases: "",
  dead_letters: "",
  outbox_backlog: "",
  server_connections: "%",
  kafka_connection: "ms",
  kafka_lag: "",
  sample_age: "ms",
  database: ""
}

/** Which way a check's value gets worse. */
export type Direction = "higher is worse" | "lower is worse"

/**
 * Each threshold setting: its variable, unit and direction (the variables are
 * read by `Health`; the unit says how their values are written).
 *
 * @since 0.1.0
 */
export const settings: { readonly [K in keyof Thresholds]: { readonly variable: string; readonly unit: "percent" | "duration" | "count"; readonly direction: Direction } } = {
  poolUsage: { variable: "HEALTH_POOL_USAGE", unit: "percent", direction: "higher is worse" },
  queryTime: { variable: "HEALTH_QUERY_TIME", unit: "duration", direction: "higher is worse" },
  cacheHit: { variable: "HEALTH_CACHE_HIT", unit: "percent", direction: "lower is worse" },
  readyDepth: { variable: "HEALTH_READY_DEPTH", unit: "count", direction: "higher is worse" },
  oldestReady: { variable: "HEALTH_OLDEST_READY", unit: "duration", direction: "higher is worse" },
  expiredLeases: { variable: "HEALTH_EXPIRED_LEASES", unit: "count", direction: "higher is worse" },
  deadLetters: { variable: "HEALTH_DEAD_LETTERS", unit: "count", direction: "higher is worse" },
  outboxBacklog: { variable: "HEALTH_OUTBOX_BACKLOG", unit: "count", direction: "higher is worse" },
  serverConnections: { variable: "HEALTH_SERVER_CONNECTIONS", unit: "percent", direction: "higher is worse" },
  kafkaLag: { variable: "HEALTH_KAFKA_LAG", unit: "count", direction: "higher is worse" },
  kafkaDisconnected: { variable: "HEALTH_KAFKA_DISCONNECTED", unit: "duration", direction: "higher is worse" }
}

const minute = 60_000

/**
 * The default thresholds. Pool usage, query time and cache hit ratio are the
 * database-resilience design's; the others:
 *
 * - ready depth 10,000 / 100,000 / 1,000,000: a bulk enqueue of 20,000 tasks,
 *   drained by one worker in seconds, is a batch, not a fault (at 1,000 / 10,000
 *   the benchmark's every drain read unhealthy); the age of the oldest ready task
 *   says whether a backlog is a delay.
 * - oldest ready 1 / 5 / 15 minutes: a free worker claims a due task within
 *   milliseconds (LISTEN/NOTIFY wake-ups), so a minute of waiting means the workers
 *   are all busy or none serves the queue.
 * - expired leases 1 / 20 / 100: the reaper takes them every REAP_INTERVAL (5 s),
 *   so any is a crashed or stalled worker; 20 is two workers' worth of
 *   MAX_CONCURRENT_JOBS (10).
 * - dead letters in the last hour 1 / 10 / 100: each needs a person (replay or
 *   fix); ten an hour is a failing job or producer, not bad luck.
 * - outbox backlog 1,000 / 10,000 / 100,000: the relay publishes in batches of
 *   hundreds each round, so a thousand unpublished events is a relay behind or a
 *   Kafka it cannot reach.
 * - server connections 70 / 85 / 95 % of max_connections: as the pool's, since
 *   past it every instance's pool, and every operator's psql, is refused.
 * - Kafka lag 1,000 / 10,000 / 100,000 messages: a few fetches' worth is normal
 *   under load; ten thousand is consumption slower than production.
 * - Kafka disconnected 0 / 0 / 5 minutes: a consumer not in its group takes no
 *   messages, so it is unhealthy at once; kafkajs rejoins within seconds of a
 *   broker coming back, so five minutes out is an outage.
 *
 * @since 0.1.0
 */
export const defaults: Thresholds = {
  poolUsage: { degraded: 70, unhealthy: 85, critical: 95 },
  queryTime: { degraded: 100, unhealthy: 250, critical: 500 },
  cacheHit: { degraded: 90, unhealthy: 80, critical: 70 },
  readyDepth: { degraded: 10_000, unhealthy: 100_000, critical: 1_000_000 },
  oldestReady: { degraded: minute, unhealthy: 5 * minute, critical: 15 * minute },
  expiredLeases: { degraded: 1, unhealthy: 20, critical: 100 },
  deadLetters: { degraded: 1, unhealthy: 10, critical: 100 },
  outboxBacklog: { degraded: 1_000, unhealthy: 10_000, critical: 100_000 },
  serverConnections: { degraded: 70, unhealthy: 85, critical: 95 },
  kafkaLag: { degraded: 1_000, unhealthy: 10_000, critical: 100_000 },
  kafkaDisconnected: { degraded: 0, unhealthy: 0, critical: 5 * minute }
}

/**
 * Fewest block accesses (hits + reads) a cache hit ratio is judged on: a ratio of
 * a few dozen reads after a restart says nothing about the cache.
 *
 * @since 0.1.0
 */
export const minBlockAccesses = 1_000

/**
 * The level `value` reaches: the worst threshold it is at or past.
 *
 * @since 0.1.0
 */
export const levelOf = (value: number, levels: Levels, direction: Direction = "higher is worse"): HealthStatus => {
  const reached = (threshold: number) => (direction === "higher is worse" ? value >= threshold : value <= threshold)
  return worst([
    reached(levels.degraded) ? "DEGRADED" : "HEALTHY",
    reached(levels.unhealthy) ? "UNHEALTHY" : "HEALTHY",
    reached(levels.critical) ? "CRITICAL" : "HEALTHY"
  ])
}

// ---------------------------------------------------------------------------
// the sample

/**
 * Tasks of one queue, status and priority band.
 *
 * @since 0.1.0
 */
export interface QueueDepth {
  readonly queue: string
  readonly status: "queued" | "retrying" | "running"
  readonly band: PriorityBand
  readonly tasks: number
  /** Of them, due now (`run_at <= now()`); 0 for running. */
  readonly ready: number
}

/**
 * The pool of this instance, as the server sees it (the sampler's).
 *
 * @since 0.1.0
 */
export interface PoolSample {
  /** Connections active or idle in a transaction. */
  readonly inUse: number
  readonly idle: number
  /** DB_POOL_MAX. */
  readonly max: number
  /** `select 1` through the pool: its round trip (waiting for a connection included), or no answer within `timeoutMs`. */
  readonly probe: { readonly _tag: "Answered"; readonly ms: number } | { readonly _tag: "TimedOut"; readonly timeoutMs: number }
  /** Statements running on the pool's connections now, and how long they have run on average. */
  readonly active: { readonly statements: number; readonly meanMs: number }
}

/**
 * The consumer's state, from the runtime's events.
 *
 * @since 0.1.0
 */
export interface KafkaSample {
  /** In its group now. */
  readonly joined: boolean
  /** Partitions assigned to this instance. */
  readonly partitions: number
  /** Messages of those partitions after their last committed batch, by that batch's fetch. */
  readonly lag: number
  /** How long it has been out of its group (0 while joined). */
  readonly disconnectedMs: number
  /** Why it left, when it did. */
  readonly reason?: string
  /** Started, not joined yet, within its first join's grace: neither check is judged. */
  readonly joining?: boolean
}

/**
 * One sample: what the sampler read, and what the service adds (the consumer, the
 * sample's age). Absent parts are not judged.
 *
 * @since 0.1.0
 */
export interface HealthSample {
  readonly depth: ReadonlyArray<QueueDepth>
  /** Age of the oldest ready task of each queue that has one, ms (the database clock). */
  readonly oldestReady: ReadonlyArray<{ readonly queue: string; readonly ageMs: number }>
  /**
   * The queues an operator paused: their tasks wait by design, so they count in
   * neither the ready depth nor the oldest ready task (the finding names them).
   */
  readonly pausedQueues?: ReadonlyArray<string>
  readonly expiredLeases: number
  readonly deadLettersLastHour: number
  readonly outboxBacklog: number
  /** Block accesses since the previous sample (since the statistics were reset, for the first). */
  readonly cache: { readonly hits: number; readonly reads: number }
  readonly server: { readonly connections: number; readonly maxConnections: number }
  /** This instance's pool; absent where it means nothing (the CLI's own). */
  readonly pool?: PoolSample
  /** Absent without Kafka. */
  readonly kafka?: KafkaSample
  /** How old the sample is against the sampler's interval; absent for a sample just taken. */
  readonly age?: { readonly ms: number; readonly intervalMs: number; readonly lastError?: string }
}

/**
 * The probe's round trip, or its timeout when it got no answer (a lower bound).
 *
 * @since 0.1.0
 */
export const probeMs = (pool: PoolSample): number => (pool.probe._tag === "Answered" ? pool.probe.ms : pool.probe.timeoutMs)

/**
 * The pool's "query time": the mean of how long each statement running on it has
 * run so far and of the probe's round trip, so an idle pool is judged by its probe.
 *
 * @since 0.1.0
 */
export const queryTimeMs = (pool: PoolSample): number =>
  (pool.active.meanMs * pool.active.statements + probeMs(pool)) / (pool.active.statements + 1)

// ---------------------------------------------------------------------------
// the report

/**
 * One check's verdict. `value` is in the check's unit (%, ms, or a count).
 *
 * @since 0.1.0
 */
export interface Finding {
  readonly check: Check
  readonly status: HealthStatus
  readonly value: number
  readonly message: string
  /** What to change; present on every finding that is not HEALTHY. */
  readonly recommendation?: string
}

/**
 * The verdict: the worst finding's status, every measured check's finding, and
 * the checks that had no data, with why.
 *
 * @since 0.1.0
 */
export interface HealthReport {
  readonly status: HealthStatus
  readonly findings: ReadonlyArray<Finding>
  readonly unmeasured: ReadonlyArray<{ readonly check: Check; readonly reason: string }>
}

/** A number as people read it: integers whole, others to one decimal. */
const num = (n: number): string =>
  Number.isInteger(n) ? n.toLocaleString("en-US") : n.toLocaleString("en-US", { maximumFractionDigits: 1 })

/** A duration in ms as people read it. */
export const formatMs = (ms: number): string => {
  if (ms < 1_000) return `${Math.round(ms)} ms`
  if (ms < 2 * minute) return `${num(Math.round(ms / 100) / 10)} s`
  if (ms < 120 * minute) return `${num(Math.round(ms / 6_000) / 10)} min`
  return `${num(Math.round(ms / 360_000) / 10)} h`
}

const pct = (n: number) => `${Math.round(n)} %`

/** A finding at `status`, its recommendation only when it is not healthy. */
const finding = (check: Check, status: HealthStatus, value: number, message: string, recommendation: string): Finding =>
  status === "HEALTHY" ? { check, status, value, message } : { check, status, value, message, recommendation }

/**
 * Judges `sample` against `thresholds` (see module doc).
 *
 * @since 0.1.0
 */
export const assess = (sample: HealthSample, thresholds: Thresholds = defaults): HealthReport => {
  const findings: Array<Finding> = []
  const unmeasured: Array<{ check: Check; reason: string }> = []
  const t = thresholds

  // The pool.
  const pool = sample.pool
  if (pool === undefined) {
    const reason = "no pool of a running service here (this process's own pool says nothing about one)"
    unmeasured.push({ check: "pool_usage", reason }, { check: "pool_probe", reason }, { check: "query_time", reason })
  } else {
    const usage = pool.max > 0 ? (100 * pool.inUse) / pool.max : 0
    const status = levelOf(usage, t.poolUsage)
    findings.push(finding("pool_usage", status, usage,
      `pool at ${pct(usage)}: ${pool.inUse} of ${pool.max} connections in use, ${pool.idle} idle`,
      `raise DB_POOL_MAX (now ${pool.max}) or lower MAX_CONCURRENT_JOBS; a transaction held open (a job holding a connection) keeps one from the others`))
    const probe = pool.probe
    findings.push(probe._tag === "Answered"
      ? finding("pool_probe", "HEALTHY", probe.ms, `a pool connection answered select 1 in ${formatMs(probe.ms)}`, "")
      : finding("pool_probe", "CRITICAL", probe.timeoutMs,
        `no pool connection answered select 1 within ${formatMs(probe.timeoutMs)}: statements are waiting for connections`,
        "raise DB_POOL_MAX or lower MAX_CONCURRENT_JOBS; look in pg_stat_activity for statements or transactions holding this pool's connections"))
    const meanMs = queryTimeMs(pool)
    const queryStatus = levelOf(meanMs, t.queryTime)
    findings.push(finding("query_time", queryStatus, meanMs,
      `statements take ${probe._tag === "TimedOut" ? "at least " : ""}${formatMs(meanMs)} on average (${pool.active.statements} running on the pool, and the probe)`,
      "find the slow statements (pg_stat_activity, pg_stat_statements) and their missing indexes or locks; a busy server needs fewer MAX_CONCURRENT_JOBS or more CPU and I/O"))
  }

  // The database server.
  const accesses = sample.cache.hits + sample.cache.reads
  if (accesses < minBlockAccesses) {
    unmeasured.push({ check: "cache_hit", reason: `too few block accesses to judge (${num(accesses)}, at least ${num(minBlockAccesses)})` })
  } else {
    const ratio = (100 * sample.cache.hits) / accesses
    findings.push(finding("cache_hit", levelOf(ratio, t.cacheHit, "lower is worse"), ratio,
      `cache hit ratio ${num(Math.round(ratio * 10) / 10)} % (${num(sample.cache.reads)} of ${num(accesses)} blocks read from disk)`,
      "the working set does not fit in memory: raise shared_buffers (and the server's memory), or delete finished tasks sooner"))
  }
  const { connections, maxConnections } = sample.server
  const serverUse = maxConnections > 0 ? (100 * connections) / maxConnections : 0
  findings.push(finding("server_connections", levelOf(serverUse, t.serverConnections), serverUse,
    `${connections} of max_connections ${maxConnections} in use (${pct(serverUse)})`,
    "lower DB_POOL_MAX across the instances (their sum must stay under max_connections), raise max_connections, or put PgBouncer in front"))

  // The tasks. A paused queue's wait is the operator's choice, not a lack of
  // workers: it is named, not judged.
  const paused = new Set(sample.pausedQueues ?? [])
  const served = sample.depth.filter((d) => !paused.has(d.queue))
  const held = sample.depth.filter((d) => paused.has(d.queue)).reduce((n, d) => n + d.ready, 0)
  const heldIn = [...paused].filter((q) => sample.depth.some((d) => d.queue === q && d.ready > 0)).map((q) => `"${q}"`)
  const ready = served.reduce((n, d) => n + d.ready, 0)
  const deepest = [...served.reduce((m, d) => m.set(d.queue, (m.get(d.queue) ?? 0) + d.ready), new Map<string, number>())]
    .sort((a, b) => b[1] - a[1])[0]
  findings.push(finding("ready_depth", levelOf(ready, t.readyDepth), ready,
    `${num(ready)} tasks ready to run${deepest !== undefined && deepest[1] > 0 ? ` (most in queue "${deepest[0]}": ${num(deepest[1])})` : ""}` +
      (held > 0 ? `; ${num(held)} more wait in paused ${heldIn.length === 1 ? "queue" : "queues"} ${heldIn.join(", ")} (taskfiber resume <queue>)` : ""),
    "the workers do not keep up: add instances or raise MAX_CONCURRENT_JOBS (and DB_POOL_MAX with it), or raise QUEUE_CONCURRENCY of the deep queue"))
  const oldest = sample.oldestReady.filter((o) => !paused.has(o.queue)).reduce<{ queue: string; ageMs: number } | undefined>(
    (o, q) => (o === undefined || q.ageMs > o.ageMs ? q : o), undefined)
  const oldestMs = oldest?.ageMs ?? 0
  findings.push(finding("oldest_ready", levelOf(oldestMs, t.oldestReady), oldestMs,
    oldest === undefined ? "no task is waiting to run" : `the oldest ready task has waited ${formatMs(oldestMs)} (queue "${oldest.queue}")`,
    `tasks wait for a free worker: check that a running worker serves queue "${oldest?.queue ?? ""}" (taskfiber status), add instances or raise MAX_CONCURRENT_JOBS or its QUEUE_CONCURRENCY`))
  findings.push(finding("expired_leases", levelOf(sample.expiredLeases, t.expiredLeases), sample.expiredLeases,
    `${num(sample.expiredLeases)} running tasks have expired leases`,
    "workers crashed or stalled (a blocked event loop misses its heartbeat): the reaper retries them each REAP_INTERVAL; if they stay, no reaper runs, or LEASE_DURATION is shorter than a heartbeat can keep up with"))
  findings.push(finding("dead_letters", levelOf(sample.deadLettersLastHour, t.deadLetters), sample.deadLettersLastHour,
    `${num(sample.deadLettersLastHour)} dead ${sample.deadLettersLastHour === 1 ? "letter" : "letters"} in the last hour`,
    "tasks failed for good or messages could not be read: see their reasons in taskfiber.dead_letters, fix the job or the producer, then replay the tasks (taskfiber.replay_task)"))
  findings.push(finding("outbox_backlog", levelOf(sample.outboxBacklog, t.outboxBacklog), sample.outboxBacklog,
    `${num(sample.outboxBacklog)} status events waiting to be relayed to Kafka`,
    "the status relay is behind or cannot reach Kafka: check KAFKA_BROKERS and the relay's log lines; without a relay running, clear taskfiber.settings.outbox_topic"))

  // Kafka.
  const kafka = sample.kafka
  if (kafka === undefined) {
    unmeasured.push({ check: "kafka_connection", reason: "Kafka not configured" }, { check: "kafka_lag", reason: "Kafka not configured" })
  } else if (kafka.joining === true) {
    unmeasured.push({ check: "kafka_connection", reason: "the consumer is joining its group" }, { check: "kafka_lag", reason: "the consumer is joining its group" })
  } else {
    findings.push(kafka.joined
      ? finding("kafka_connection", "HEALTHY", 0, `the consumer is in its group with ${kafka.partitions} partitions`, "")
      : finding("kafka_connection", levelOf(kafka.disconnectedMs, t.kafkaDisconnected), kafka.disconnectedMs,
        `the consumer has not been in its group for ${formatMs(kafka.disconnectedMs)}${kafka.reason === undefined ? "" : `: ${kafka.reason}`}`,
        "no messages are consumed: check that KAFKA_BROKERS are reachable from this host and the credentials (KAFKA_SASL_*, KAFKA_SSL); kafkajs rejoins by itself once they are"))
    findings.push(finding("kafka_lag", levelOf(kafka.lag, t.kafkaLag), kafka.lag,
      `${num(kafka.lag)} messages not consumed yet on this instance's ${kafka.partitions} partitions`,
      "consumption is slower than production: add partitions and instances, raise KAFKA_PARTITIONS_CONCURRENTLY, or make the database faster for the ingest"))
  }

  // The sample itself.
  const age = sample.age
  if (age !== undefined && age.ms > 3 * age.intervalMs) {
    findings.push(age.lastError !== undefined
      ? finding("sample_age", "CRITICAL", age.ms, `no sample for ${formatMs(age.ms)}: ${age.lastError}`,
        "the sampler cannot read the database: check that the server is up and reachable (DATABASE_URL), and its log")
      : finding("sample_age", "UNHEALTHY", age.ms, `no sample for ${formatMs(age.ms)} (SAMPLE_INTERVAL ${formatMs(age.intervalMs)}): the numbers here are old`,
        "the sampler's statements are slow or stuck: look in pg_stat_activity for application_name 'taskfiber sampler'"))
  }

  return { status: worst(findings.map((f) => f.status)), findings, unmeasured }
}

/**
 * A report when there is no sample at all: the database could not be read
 * (`reason`), which is critical.
 *
 * @since 0.1.0
 */
export const unreachable = (reason: string): HealthReport => ({
  status: "CRITICAL",
  findings: [{
    check: "database",
    status: "CRITICAL",
    value: 0,
    message: `the database cannot be read: ${reason}`,
    recommendation: "check that the server is up and reachable from this host, and DATABASE_URL (host, port, credentials)"
  }],
  unmeasured: []
})

// ---------------------------------------------------------------------------
// settings

/**
 * Three thresholds `degraded,unhealthy,critical` as written in a setting (`70,85,95`,
 * `100ms,250ms,500ms`): the levels in the setting's unit (durations in ms), or why
 * not. `parseDuration` reads one duration (DurationText's forms).
 *
 * @since 0.1.0
 */
export const parseLevels = (
  text: string,
  key: keyof Thresholds,
  parseDuration: (text: string) => number | undefined
): Levels | string => {
  const { direction, unit } = settings[key]
  const parts = text.split(",").map((p) => p.trim())
  const what = unit === "percent" ? "percentages from 0 to 100" : unit === "duration" ? "durations (such as 250ms or 5 minutes)" : "counts (integers of 0 or more)"
  const order = direction === "higher is worse" ? "rising" : "falling"
  const expected = `expected three ${what}, degraded,unhealthy,critical, ${order} or equal`
  if (parts.length !== 3) return expected
  const values: Array<number> = []
  for (const p of parts) {
    const v = unit === "duration" ? parseDuration(p) : /^\d+(\.\d+)?$/.test(p) ? Number(p) : undefined
    if (v === undefined || !Number.isFinite(v) || v < 0) return expected
    if (unit === "percent" && v > 100) return expected
    if (unit === "count" && !Number.isInteger(v)) return expected
    values.push(v)
  }
  const [degraded, unhealthy, critical] = values as [number, number, number]
  const ordered = direction === "higher is worse"
    ? degraded <= unhealthy && unhealthy <= critical
    : degraded >= unhealthy && unhealthy >= critical
  return ordered ? { degraded, unhealthy, critical } : expected
}

/**
 * `levels` as a setting would write them (durations as `250ms`, `30s`, `5m`).
 *
 * @since 0.1.0
 */
export const formatLevels = (levels: Levels, key: keyof Thresholds): string =>
  [levels.degraded, levels.unhealthy, levels.critical]
    .map((v) => (settings[key].unit !== "duration" ? String(v) : v % minute === 0 && v > 0 ? `${v / minute}m` : v % 1000 === 0 && v > 0 ? `${v / 1000}s` : `${v}ms`))
    .join(",")
