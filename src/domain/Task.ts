/**
 * The task model: a stored task, one entry of its history, and the enqueue
 * request that creates one.
 *
 * The schemas decode from what arrives over the wire or from the database:
 * dates may be `Date` values or ISO strings.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { LastError } from "./Classification.ts"
import { Priority } from "./Priority.ts"
import { TaskStatus } from "./TaskStatus.ts"

/**
 * A `Date`, decoded from a `Date` or from an ISO 8601 string.
 *
 * @since 0.1.0
 */
export const DateInput = Schema.Union([Schema.Date, Schema.DateFromString])

/**
 * A task id: a UUID string.
 *
 * @since 0.1.0
 */
export const TaskId = Schema.String.check(Schema.isGUID())

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Whether `id` has a uuid's shape, any version or none: {@link TaskId}'s rule (and
 * what the `uuid` columns accept), as a plain test for the paths that run per
 * message.
 */
export const isUuid = (id: unknown): id is string => typeof id === "string" && uuidPattern.test(id)

/**
 * A queue name, 1 to 128 characters (the `tasks.queue` check in SQL).
 *
 * @since 0.1.0
 */
export const QueueName = Schema.String.check(Schema.isBetweenLength(1, 128))

/**
 * A task type, 1 to 255 characters (the `tasks.type` check in SQL).
 *
 * @since 0.1.0
 */
export const TaskType = Schema.String.check(Schema.isBetweenLength(1, 255))

/**
 * A deduplication key, 1 to 255 characters (the `tasks.dedupe_key` check in SQL).
 *
 * @since 0.1.0
 */
export const DedupeKey = Schema.String.check(Schema.isBetweenLength(1, 255))

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const PositiveCount = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

/**
 * Schema of a stored task (a row of `taskfiber.tasks`, in camelCase).
 *
 * @since 0.1.0
 */
export const Task = Schema.Struct({
  id: TaskId,
  queue: QueueName,
  type: TaskType,
  payload: Schema.Json,
  priority: Priority,
  status: TaskStatus,
  /** Runs started: 0 until the first claim. */
  attempt: Count,
  /**
   * Status changes so far. A claim raises it, and nothing but the task's next status
   * change does: the revision a claim returns names that claim (see {@link Claim}).
   */
  revision: PositiveCount,
  maxAttempts: PositiveCount,
  runAt: DateInput,
  leaseExpiresAt: Schema.NullOr(DateInput),
  workerId: Schema.NullOr(Schema.String),
  progress: Schema.Json,
  checkpoint: Schema.Json,
  result: Schema.Json,
  lastError: Schema.NullOr(LastError),
  dedupeKey: Schema.NullOr(DedupeKey),
  createdAt: DateInput,
  startedAt: Schema.NullOr(DateInput),
  finishedAt: Schema.NullOr(DateInput),
  updatedAt: DateInput,
  traceparent: Schema.NullOr(Schema.String),
  /** Deleted by the statement that completes it; no history of its happy path. */
  removeOnComplete: Schema.Boolean
})

/**
 * A stored task.
 *
 * @since 0.1.0
 */
export type Task = typeof Task.Type

/**
 * One claim of a task: its id and the revision the claim gave it. Every statement
 * of a run names its claim, and the database accepts it only while the task is
 * still running under that claim (fencing): a run that stalled past its lease and
 * was reaped, or whose task was cancelled, changes nothing any more, even when the
 * same worker has claimed the task again.
 *
 * @since 0.1.0
 */
export interface Claim {
  readonly id: string
  readonly revision: number
  /** The run's span as a `traceparent` (with a tracing backend): the parent of the status event its outcome relays. */
  readonly runTraceparent?: string | undefined
}

/**
 * What a worker needs of a task it claimed in order to run it: the columns
 * `TaskStore.claimToRun` reads. Timestamps, results and errors stay in the
 * database (parsing them cost more per task than the rest of the claim).
 */
export interface ClaimedTask
  extends Pick<Task, "id" | "queue" | "type" | "payload" | "attempt" | "maxAttempts" | "checkpoint" | "removeOnComplete" | "revision">
{
  /**
   * The claim recorded that its handler starts at once. False for a task claimed
   * ahead of a free job slot (PREFETCH): its start is recorded by the next heartbeat
   * after it, and a worker crash before that hands it back with its attempt.
   */
  readonly startRecorded: boolean
  /**
   * Handed back unstarted before (a worker holding it crashed): its start must be
   * recorded before its handler runs, so that a task that crashes its worker at
   * once still uses up its attempts (schema/functions/reaper.sql).
   */
  readonly recordStartFirst: boolean
  /**
   * The W3C trace context the task was enqueued with (a Kafka message's
   * `traceparent`), the parent of its run's span; none when it came without one.
   */
  readonly traceparent?: string | null
  /** Set by a run with a span (see {@link Claim}). */
  readonly runTraceparent?: string | undefined
  /** Its priority, for the run's span. */
  readonly priority?: number
  /** Milliseconds from when it came due (run_at) to this claim, by the database clock: its wait in the queue. */
  readonly waitedMs?: number
}

/**
 * Schema of one status change in a task's history (`taskfiber.task_events`).
 *
 * @since 0.1.0
 */
export const TaskEvent = Schema.Struct({
  taskId: TaskId,
  seq: Schema.Int,
  /** `null` for the creation event. */
  from: Schema.NullOr(TaskStatus),
  to: TaskStatus,
  attempt: Count,
  error: Schema.NullOr(LastError),
  workerId: Schema.NullOr(Schema.String),
  at: DateInput
})

/**
 * One status change in a task's history.
 *
 * @since 0.1.0
 */
export type TaskEvent = typeof TaskEvent.Type

/**
 * Schema of an enqueue request: what a producer sends to enqueue a task. Only
 * `type` is required; `queue` defaults to `"default"`, `payload` to `{}`,
 * `priority` to 0, and `maxAttempts` to the store's configured limit
 * (`RETRY_MAX_ATTEMPTS`). When neither `runAt` nor `delayMs` is given the task is
 * due at once; giving both is an error, since one would silently win.
 *
 * Its `Encoded` side ({@link EnqueueRequest.Encoded}) is what `TaskStore.enqueue`
 * accepts: the request before defaults and decoding.
 *
 * @since 0.1.0
 */
export const EnqueueRequest = Schema.Struct({
  type: TaskType,
  queue: QueueName.pipe(Schema.withDecodingDefault(Effect.succeed("default"))),
  payload: Schema.Unknown.pipe(Schema.withDecodingDefault(Effect.succeed({}))),
  priority: Priority.pipe(Schema.withDecodingDefault(Effect.succeed(0))),
  maxAttempts: Schema.optional(PositiveCount),
  id: Schema.optional(TaskId),
  dedupeKey: Schema.optional(DedupeKey),
  runAt: Schema.optional(DateInput),
  delayMs: Schema.optional(Count),
  traceparent: Schema.optional(Schema.String),
  /**
   * Delete the task when it succeeds (BullMQ's `removeOnComplete`): it keeps no
   * history of its happy path; retries, failures and dead letters are recorded.
   */
  removeOnComplete: Schema.optional(Schema.Boolean)
}).check(Schema.makeFilter((request) =>
  request.runAt === undefined || request.delayMs === undefined
    ? undefined
    : { path: ["delayMs"], issue: "give runAt or delayMs, not both" }
))

/**
 * A decoded enqueue request, defaults applied.
 *
 * @since 0.1.0
 */
export type EnqueueRequest = typeof EnqueueRequest.Type

/**
 * @since 0.1.0
 */
export declare namespace EnqueueRequest {
  /**
   * An enqueue request as a producer sends it, before defaults and decoding.
   *
   * @since 0.1.0
   */
  export type Encoded = typeof EnqueueRequest.Encoded
}
