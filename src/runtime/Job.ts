/**
 * A job: a named handler with a payload schema and its policies.
 *
 * ```ts
 * const SendEmail = Job.define({
 *   name: "send-email",
 *   payload: Schema.Struct({ to: Schema.String, subject: Schema.String }),
 *   retry: RetryPolicy.exponential({ baseMs: 2000, maxAttempts: 5 }),
 *   timeout: "30 seconds",
 *   run: (payload, ctx) => Effect.logInfo(`sending to ${payload.to}`, ctx.attempt)
 * })
 * ```
 */
import { Duration, Schema } from "effect"
import type { Effect } from "effect"
import { type Classifier, classify } from "../domain/Classification.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import type { JobContext } from "./JobContext.ts"

/** The schema of a job's payload: decoded from and encoded to JSON. */
export type PayloadSchema<P> = Schema.Codec<P, unknown>

/** What `define` takes. */
export interface JobOptions<Name extends string, P, A, E> {
  readonly name: Name
  readonly payload: PayloadSchema<P>
  readonly run: (payload: P, ctx: JobContext) => Effect.Effect<A, E>
  /**
   * Delays between runs and the attempt limit. Without one: the delays of
   * `RetryPolicy.exponential()` (1 s doubling), and the store's attempt limit,
   * `RETRY_MAX_ATTEMPTS` (25 unless set), unless `maxAttempts` gives one.
   */
  readonly retry?: RetryPolicy.RetryPolicy
  /** Per-run limit; exceeding it is a transient `TaskTimeout`. Default: `JOB_TIMEOUT`. */
  readonly timeout?: Duration.Input
  /** Default priority of its tasks (higher first). */
  readonly priority?: number
  /** Overrides the retry policy's `maxAttempts` (or `RETRY_MAX_ATTEMPTS`, without a policy). */
  readonly maxAttempts?: number
  /** The queue its tasks go to. Default: "default". */
  readonly queue?: string
  /**
   * Other queues its tasks may be enqueued into (`Tasks.enqueue(job, p, { queue })`),
   * e.g. a bulk lane with its own QUEUE_CONCURRENCY. Every worker that has the job
   * serves all of them. An enqueue into any other queue is refused
   * (`QueueNotAllowed`): no worker would ever run it there.
   */
  readonly otherQueues?: ReadonlyArray<string>
  /** Default: transient unless marked permanent (`Classification.classify`). */
  readonly classify?: Classifier
  /**
   * Its tasks are deleted by the statement that completes them, and keep no history
   * of their happy path (BullMQ's `removeOnComplete`; graphile-worker does this for
   * every job). Retries, failures and dead letters are recorded as for any task.
   * Default false: every task stays, with its history.
   */
  readonly removeOnComplete?: boolean
}

/** A defined job. */
export interface Job<Name extends string = string, P = any, A = unknown, E = unknown> {
  readonly name: Name
  readonly payload: PayloadSchema<P>
  readonly run: (payload: P, ctx: JobContext) => Effect.Effect<A, E>
  /**
   * The delays between runs. The limit a run obeys is its task's `maxAttempts`, set
   * at enqueue: the request's, else {@link Job.maxAttempts}, else the store's.
   */
  readonly retry: RetryPolicy.RetryPolicy
  /**
   * The job's own attempt limit — its `maxAttempts`, else its retry policy's — or
   * `undefined` when it gave neither: its tasks then get the store's attempt limit
   * (`RETRY_MAX_ATTEMPTS`). A job given `RetryPolicy.exponential()` has a policy,
   * and so its 25 runs, whatever `RETRY_MAX_ATTEMPTS` says.
   */
  readonly maxAttempts: number | undefined
  readonly timeout: Duration.Duration | undefined
  readonly priority: number
  readonly queue: string
  /** Every queue its tasks may be in: `queue` first, then `otherQueues`. */
  readonly queues: ReadonlyArray<string>
  readonly classify: Classifier
  readonly removeOnComplete: boolean
}

/** Any job, its types erased (registries hold these). */
export type AnyJob = Job<string, any, unknown, unknown>

/** Defines a job. */
export const define = <const Name extends string, P, A, E>(options: JobOptions<Name, P, A, E>): Job<Name, P, A, E> => {
  const base = options.retry ?? RetryPolicy.exponential()
  const retry = options.maxAttempts === undefined ? base : RetryPolicy.exponential({ ...base, maxAttempts: options.maxAttempts })
  return {
    name: options.name,
    payload: options.payload,
    run: options.run,
    retry,
    maxAttempts: options.maxAttempts === undefined && options.retry === undefined ? undefined : retry.maxAttempts,
    timeout: options.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout),
    priority: options.priority ?? 0,
    queue: options.queue ?? "default",
    queues: [...new Set([options.queue ?? "default", ...(options.otherQueues ?? [])])],
    classify: options.classify ?? classify,
    removeOnComplete: options.removeOnComplete ?? false
  }
}
