/**
 * Settings of the job runtime, read from the environment.
 */
import { Config, Data, Duration, Effect, Schema } from "effect"
import * as DurationText from "../domain/DurationText.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import { maxAttemptsConfig } from "../store/TaskStore.ts"

/** The job runtime's settings. */
export interface RuntimeConfig {
  /** `MAX_CONCURRENT_JOBS`: job fibers at once in this instance. */
  readonly maxConcurrentJobs: number
  /** `QUEUE_CONCURRENCY`: per-queue limits, `emails=2,reports=1`. */
  readonly queueConcurrency: ReadonlyMap<string, number>
  /** `JOB_TIMEOUT`: per-run limit of jobs that set none. */
  readonly jobTimeout: Duration.Duration
  /**
   * `RETRY_MAX_ATTEMPTS`: runs of jobs that set no retry policy and no `maxAttempts`
   * of their own. The task store applies it at enqueue (`Taskfiber.layer` hands it
   * this value); the supervisor does not read it.
   */
  readonly retryMaxAttempts: number
  /** `SHUTDOWN_GRACE`: how long running jobs may finish after SIGTERM. */
  readonly shutdownGrace: Duration.Duration
  /** `LEASE_DURATION`: a claimed task's lease; renewed every third of it. */
  readonly lease: Duration.Duration
  /** `REAP_INTERVAL`: how often expired leases of crashed workers are reaped. */
  readonly reapInterval: Duration.Duration
  /** `PROGRESS_INTERVAL`: the least time between two progress writes of a task. */
  readonly progressInterval: Duration.Duration
  /** `CLAIM_BATCH`: most tasks claimed (and completed) in one statement. */
  readonly claimBatch: number
  /**
   * `PREFETCH`: tasks claimed ahead of free job slots and held in this instance
   * (graphile-worker's local queue). 0, the default, claims only for free slots, so
   * a higher-priority task enqueued later never waits behind a local buffer. More
   * means fewer, larger claims for a worker draining many short tasks; prefetched
   * tasks are `running` (leased, attempt counted) from their claim, and handed back
   * to the queue at shutdown. Queues with a QUEUE_CONCURRENCY limit never prefetch.
   */
  readonly prefetch: number
}

/** The defaults. */
export const defaults: RuntimeConfig = {
  maxConcurrentJobs: 10,
  queueConcurrency: new Map(),
  jobTimeout: Duration.minutes(15),
  retryMaxAttempts: RetryPolicy.defaults.maxAttempts,
  shutdownGrace: Duration.seconds(30),
  lease: Duration.seconds(30),
  reapInterval: Duration.seconds(5),
  progressInterval: Duration.seconds(1),
  claimBatch: 100,
  prefetch: 0
}

/** One `queue=limit` entry of `QUEUE_CONCURRENCY` (limit >= 1). */
const queueLimitEntry = /^\s*([^=\s,]+)\s*=\s*([1-9]\d*)\s*$/

/**
 * `QUEUE_CONCURRENCY`'s text: entries `queue=limit` separated by commas. Checked
 * by the schema, so a malformed value is a ConfigError that names the variable.
 */
const QueueConcurrencyText = Schema.String.check(
  Schema.makeFilter((text) =>
    text.split(",").every((e) => e.trim() === "" || queueLimitEntry.test(e)) ||
    "expected queue=limit entries separated by commas, each limit an integer >= 1"
  )
)

/** `QUEUE_CONCURRENCY` as set, checked (empty when unset): the text a message quotes. */
const queueConcurrencyText = Config.schema(QueueConcurrencyText, "QUEUE_CONCURRENCY").pipe(Config.withDefault(""))

/** Parses checked `QUEUE_CONCURRENCY` text (`a=1,b=2`); later entries of a queue win. */
export const parseQueueConcurrency = (text: string): ReadonlyMap<string, number> => {
  const limits = new Map<string, number>()
  for (const entry of text.split(",")) {
    const match = queueLimitEntry.exec(entry)
    if (match) limits.set(match[1]!, Number(match[2]))
  }
  return limits
}

/** An integer setting in [minimum, maximum]. */
const intBetween = (name: string, minimum: number, maximum: number, fallback: number) =>
  Config.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })), name).pipe(Config.withDefault(fallback))

/**
 * The longest duration a setting takes: 2^31 - 1 ms (24.8 days), what a timer and
 * the statements' int4 milliseconds can hold; a lease of 999999999 days would
 * otherwise fail every claim.
 */
export const maxDurationMs = 2_147_483_647

/** A duration setting ({@link DurationText}) in (0, 24.8 days], or [0, 24.8 days] with `zero` (a zero lease or interval would be a busy loop). */
export const duration = (name: string, fallback: Duration.Duration, zero: "zero allowed" | "longer than 0" = "longer than 0") =>
  Config.schema(
    Schema.String.check(
      Schema.makeFilter((text: string) => {
        const d = DurationText.parse(text)
        if (d === undefined) return `expected ${DurationText.expected}`
        const ms = Duration.toMillis(d)
        if (zero === "longer than 0" ? ms <= 0 : ms < 0) return `expected a duration ${zero === "longer than 0" ? "longer than 0" : "of 0 or more"}`
        return ms <= maxDurationMs || "expected a duration of at most 24 days"
      })
    ),
    name
  ).pipe(Config.map((text) => DurationText.parse(text)!), Config.withDefault(fallback))

/** Reads {@link RuntimeConfig} from the environment; a value out of range is a ConfigError naming its variable. */
export const config: Config.Config<RuntimeConfig> = Config.all({
  maxConcurrentJobs: intBetween("MAX_CONCURRENT_JOBS", 1, 10_000, defaults.maxConcurrentJobs),
  queueConcurrency: queueConcurrencyText.pipe(Config.map(parseQueueConcurrency)),
  jobTimeout: duration("JOB_TIMEOUT", defaults.jobTimeout),
  retryMaxAttempts: maxAttemptsConfig,
  shutdownGrace: duration("SHUTDOWN_GRACE", defaults.shutdownGrace, "zero allowed"),
  lease: duration("LEASE_DURATION", defaults.lease),
  reapInterval: duration("REAP_INTERVAL", defaults.reapInterval),
  progressInterval: duration("PROGRESS_INTERVAL", defaults.progressInterval),
  claimBatch: intBetween("CLAIM_BATCH", 1, 10_000, defaults.claimBatch),
  prefetch: intBetween("PREFETCH", 0, 100_000, defaults.prefetch)
})

/**
 * A setting that is well formed but does not fit what it configures, such as a
 * `QUEUE_CONCURRENCY` limit for a queue no loaded job runs in. The message is the
 * line the binary prints after `taskfiber: `.
 */
export class InvalidSetting extends Data.TaggedError("InvalidSetting")<{
  /** The variable (`QUEUE_CONCURRENCY`), or the option (`config.queueConcurrency`). */
  readonly setting: string
  /** The value as set. */
  readonly value: string
  /** What is wrong with it. */
  readonly reason: string
}> {
  override get message(): string {
    return `invalid setting ${this.setting}=${JSON.stringify(this.value)}: ${this.reason}`
  }
}

/**
 * Refuses a limit for a queue that none of `queues` (those the loaded jobs run in)
 * is: it would never apply, and is most likely a misspelt queue that then runs
 * without its limit. `from` says where `limits` came from, for the message: the
 * `QUEUE_CONCURRENCY` variable (quoted as set) or `Taskfiber.layer`'s
 * `config.queueConcurrency`.
 */
export const checkQueueConcurrency = (
  limits: ReadonlyMap<string, number>,
  queues: ReadonlyArray<string>,
  from: "environment" | "options"
): Effect.Effect<void, InvalidSetting | Config.ConfigError> =>
  Effect.gen(function*() {
    const unserved = [...limits.keys()].find((queue) => !queues.includes(queue))
    if (unserved === undefined) return
    const [setting, value] = from === "environment"
      ? ["QUEUE_CONCURRENCY", yield* queueConcurrencyText]
      : ["config.queueConcurrency", [...limits].map(([queue, limit]) => `${queue}=${limit}`).join(",")]
    return yield* new InvalidSetting({
      setting,
      value,
      reason: `no job runs in queue "${unserved}" (${queues.length === 0 ? "no jobs are loaded" : `queues: ${queues.join(", ")}`})`
    })
  })
