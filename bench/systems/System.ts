/**
 * One job system under benchmark, in one configuration. The harness (bench/run.ts)
 * drives every system through this interface only, so that all run the same
 * workloads: the parent process enqueues, a separate worker process
 * (bench/worker.ts) runs the jobs.
 *
 * Every job is a no-op whose payload is `{ t: number }`: the enqueue time in
 * milliseconds of the machine's monotonic clock (`now()` below: CLOCK_MONOTONIC,
 * the same in every process), from which the worker computes pickup latency.
 */

/** Milliseconds, with fractions, on the machine-wide monotonic clock. */
export const now = (): number => Number(process.hrtime.bigint()) / 1e6

/** Where the systems keep their state. */
export interface Targets {
  /** A PostgreSQL database reserved for this system (dropped and created by reset). */
  readonly databaseUrl: string
  /** Redis: host, port and a db index reserved for the benchmark (flushed by reset). */
  readonly redis: { readonly host: string; readonly port: number; readonly db: number }
}

/** The payload of every benchmark job. */
export interface Payload {
  readonly t: number
}

/** Enqueues from the parent process. */
export interface Producer {
  /** Enqueue all payloads with the system's batch API (one call per chunk). */
  readonly addBulk: (payloads: ReadonlyArray<Payload>) => Promise<void>
  /** Enqueue one job, as an application would for a single event. */
  readonly add: (payload: Payload) => Promise<void>
  readonly close: () => Promise<void>
}

/** A running worker, in the worker process. */
export interface Worker {
  /** Graceful stop: waits for running jobs and flushes batched completions. */
  readonly stop: () => Promise<void>
}

/** One system in one configuration. */
export interface System {
  /** Key in the results, e.g. `graphile-worker-fast`. */
  readonly name: string
  /** The settings, one line, for the table and the JSON. */
  readonly settings: string
  /**
   * Most jobs this configuration is asked to enqueue and drain, when the workload's
   * count would take unreasonably long (pg-boss's defaults run 5 jobs/s); rates are
   * per second either way, and the results say how many jobs were used.
   */
  readonly maxJobs?: number
  /** Node options the system's documentation recommends for a worker process. */
  readonly workerNodeOptions?: ReadonlyArray<string>
  /**
   * Fresh state: drop and recreate the system's database (or flush its Redis db)
   * and install its schema, so that no run sees another's rows, bloat or caches.
   */
  readonly reset: () => Promise<void>
  readonly producer: () => Promise<Producer>
  /**
   * Starts a worker with concurrency `concurrency` (plus this configuration's own
   * settings) whose handler calls `onJob(payload)` and returns. Resolves once the
   * worker is ready to take jobs.
   */
  readonly startWorker: (options: {
    readonly concurrency: number
    readonly onJob: (payload: Payload) => void
  }) => Promise<Worker>
  /**
   * Jobs not (yet) completed successfully — waiting, running, delayed, retrying or
   * failed — read from the system's own store. 0 after a full drain.
   */
  readonly remaining: () => Promise<number>
}

/** Builds the systems of one adapter module. */
export type SystemFactory = (targets: Targets) => ReadonlyArray<System>
