/**
 * Settings of the job runtime, read from the environment.
 */
import { Config, Duration } from "effect"
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

/** Parses `QUEUE_CONCURRENCY` (`a=1,b=2`); throws on a malformed entry. */
export const parseQueueConcurrency = (text: string): ReadonlyMap<string, number> => {
  const limits = new Map<string, number>()
  for (const entry of text.split(",").map((e) => e.trim()).filter((e) => e !== "")) {
    const match = /^([^=\s]+)\s*=\s*(\d+)$/.exec(entry)
    if (!match || Number(match[2]) < 1) throw new Error(`QUEUE_CONCURRENCY: "${entry}" is not queue=limit (limit >= 1)`)
    limits.set(match[1]!, Number(match[2]))
  }
  return limits
}

/** Reads {@link RuntimeConfig} from the environment. */
export const config: Config.Config<RuntimeConfig> = Config.all({
  maxConcurrentJobs: Config.Int("MAX_CONCURRENT_JOBS").pipe(Config.withDefault(defaults.maxConcurrentJobs)),
  queueConcurrency: Config.String("QUEUE_CONCURRENCY").pipe(
    Config.withDefault(""),
    Config.map(parseQueueConcurrency)
  ),
  jobTimeout: Config.Duration("JOB_TIMEOUT").pipe(Config.withDefault(defaults.jobTimeout)),
  retryMaxAttempts: maxAttemptsConfig,
  shutdownGrace: Config.Duration("SHUTDOWN_GRACE").pipe(Config.withDefault(defaults.shutdownGrace)),
  lease: Config.Duration("LEASE_DURATION").pipe(Config.withDefault(defaults.lease)),
  reapInterval: Config.Duration("REAP_INTERVAL").pipe(Config.withDefault(defaults.reapInterval)),
  progressInterval: Config.Duration("PROGRESS_INTERVAL").pipe(Config.withDefault(defaults.progressInterval)),
  claimBatch: Config.Int("CLAIM_BATCH").pipe(Config.withDefault(defaults.claimBatch)),
  prefetch: Config.Int("PREFETCH").pipe(Config.withDefault(defaults.prefetch))
})
