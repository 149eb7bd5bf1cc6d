/**
 * `TaskStore`: the port of every read and write of tasks; PgTaskStore is its
 * PostgreSQL implementation. Each operation is one statement — most a call of a
 * stored function from `schema/functions/` — so one transaction, and the triggers
 * of `state_machine.sql` and `history.sql` there append its `task_events`, dead
 * letters and outbox rows in that same statement.
 *
 * Crash safety follows: a crash before the statement commits leaves the task as it
 * was; after, the change and its history are both there. There is no "between".
 *
 * Every write of a run names its claim (`Claim`: id and revision): the database
 * accepts it only while the task is still running under that claim (fencing,
 * schema/functions/run.sql). Values a run stores (result, progress, checkpoint)
 * are encoded before the statement is built (`StoredJson`): one that jsonb cannot
 * hold fails the call with `UnstorableValue`, and nothing throws inside a
 * statement.
 *
 * Every operation also composes into a caller's transaction: inside
 * `Transaction.transaction(...)` (or `sql.withTransaction`) it uses that
 * transaction's connection, so e.g. an enqueue exists iff the caller commits.
 */
import { Config, Context, type Effect, type Option, Schema } from "effect"
import type { UnstorableValue } from "../domain/Errors.ts"
import type { Ageing } from "../domain/Priority.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import type * as StoredJson from "../domain/StoredJson.ts"
import type { EnqueueRequest } from "../domain/Task.ts"
import type { TaskStatus } from "../domain/TaskStatus.ts"
import type { DatabaseError } from "./DatabaseError.ts"
import type { InvalidEnqueueRequest } from "./EnqueueRequest.ts"
import type { Claim, ClaimedTask, StoredError, Task, TaskEvent } from "./TaskRow.ts"
import type { InvalidCursor } from "./Cursor.ts"

export { InvalidEnqueueRequest } from "./EnqueueRequest.ts"
export type { Claim } from "./TaskRow.ts"

/** A value to store as jsonb: encoded already (`StoredJson.encode`), or encoded by the call. */
export type JsonValue = StoredJson.EncodedJson | unknown

/** One success of {@link TaskStore.complete}. */
export interface Completion extends Claim {
  readonly result: JsonValue
  /** The task was claimed as removeOnComplete (see {@link TaskStore.complete}). */
  readonly remove?: boolean
}

/** The outcome of one enqueue request. */
export interface EnqueueResult {
  readonly id: string
  /** false: a task with this id or dedupe key already existed; nothing was written. */
  readonly created: boolean
}

/** Filter and page of {@link TaskStore.list}. */
export interface ListOptions {
  readonly status?: TaskStatus
  readonly queue?: string
  readonly type?: string
  /** 1–500, default 50. */
  readonly limit?: number
  /** `nextCursor` of the previous page. */
  readonly cursor?: string
  /** `asc` (default): oldest first; `desc`: newest first (a dashboard's recent tasks). */
  readonly order?: "asc" | "desc"
}

/**
 * One page of tasks in id order: oldest first for the ids taskfiber makes (UUIDv7,
 * to the millisecond of the producer's clock); a producer's own ids sort as uuids.
 */
export interface TaskPage {
  readonly tasks: ReadonlyArray<Task>
  /** Absent on the last page. */
  readonly nextCursor?: string
}

/** What {@link TaskStore.claim} takes. */
export interface ClaimOptions {
  readonly workerId: string
  /** Absent: every queue. */
  readonly queues?: ReadonlyArray<string>
  readonly limit: number
  readonly leaseMs: number
  readonly ageing?: Ageing
  /**
   * Commit without waiting for the WAL flush (a server crash can only undo the
   * claim, which re-queues the task). The supervisor's claims do; default false,
   * since inside a caller's transaction it would hold for that whole transaction.
   */
  readonly asyncCommit?: boolean
  /** Only tasks of these types (the worker's handlers). Absent: every type. */
  readonly types?: ReadonlyArray<string>
  /**
   * How many of the claimed tasks (the first, in claim order) start at once; the
   * rest wait in the worker for a free slot, their start recorded later
   * (`extendLeases`). Absent: all start at once.
   */
  readonly runNow?: number
}

/** The current status and revision of a task (see {@link TaskStore.statuses}). */
export interface TaskState {
  readonly id: string
  readonly status: TaskStatus
  readonly revision: number
}

/** A task with its history. */
export interface TaskWithEvents {
  readonly task: Task
  readonly events: ReadonlyArray<TaskEvent>
}

/** Queue depth and age. */
export interface QueueStats {
  readonly depth: ReadonlyArray<{ readonly queue: string; readonly status: TaskStatus; readonly priority: number; readonly count: number }>
  /** Per queue: seconds the oldest due queued or retrying task has waited. */
  readonly oldestQueued: ReadonlyArray<{ readonly queue: string; readonly ageSeconds: number }>
}

/** The store of tasks (see module doc). */
export class TaskStore extends Context.Service<TaskStore, {
  /** Enqueue one task, idempotent on `id` and on `dedupeKey`. */
  readonly enqueue: (request: EnqueueRequest.Encoded) => Effect.Effect<EnqueueResult, InvalidEnqueueRequest | DatabaseError>
  /** Enqueue many in one statement; results in input order. */
  readonly enqueueMany: (
    requests: ReadonlyArray<EnqueueRequest.Encoded>
  ) => Effect.Effect<ReadonlyArray<EnqueueResult>, InvalidEnqueueRequest | DatabaseError>
  readonly get: (id: string) => Effect.Effect<Option.Option<TaskWithEvents>, DatabaseError>
  /** A page of tasks in id order (the primary key), filtered; see {@link TaskPage}. */
  readonly list: (options?: ListOptions) => Effect.Effect<TaskPage, DatabaseError | InvalidCursor>
  /** Claim due tasks by effective priority, `FOR UPDATE SKIP LOCKED`. */
  readonly claim: (options: ClaimOptions) => Effect.Effect<ReadonlyArray<Task>, DatabaseError>
  /** The same claim, reading only what running the task needs (the supervisor's). */
  readonly claimToRun: (options: ClaimOptions) => Effect.Effect<ReadonlyArray<ClaimedTask>, DatabaseError>
  /**
   * Renew the leases of these claims of a worker, and record which of them have
   * started their handler (`started`; see ClaimOptions.runNow); returns the ids of
   * the claims that still hold their task.
   */
  readonly extendLeases: (
    workerId: string,
    leaseMs: number,
    claims: ReadonlyArray<Claim & { readonly started?: boolean }>
  ) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  /**
   * Succeed many claims; returns the claims that completed their task (those that
   * still held it; a batch may name a task's stale claim beside its current one).
   * `remove`: the task was claimed as removeOnComplete. When every item says so, the
   * batch takes the shorter way (schema/functions/complete.sql); the database checks it anyway.
   */
  readonly complete: (
    workerId: string,
    items: ReadonlyArray<Completion>
  ) => Effect.Effect<ReadonlyArray<Claim>, DatabaseError | UnstorableValue>
  /** Retry after `delayMs` (database clock), or fail when out of attempts; none if the claim lost its task. */
  readonly retry: (workerId: string, claim: Claim, error: StoredError, delayMs: number) => Effect.Effect<Option.Option<Task>, DatabaseError>
  /** Fail and dead-letter; none if the claim lost its task. */
  readonly fail: (workerId: string, claim: Claim, error: StoredError) => Effect.Effect<Option.Option<Task>, DatabaseError>
  /** Cancel queued, retrying or running tasks (from outside a run); returns each one's previous status. */
  readonly cancel: (ids: ReadonlyArray<string>, reason: string) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly previousStatus: TaskStatus }>, DatabaseError>
  /** The run gave up (its handler failed with TaskCancelled): cancelled; false if the claim lost its task. */
  readonly cancelClaimed: (workerId: string, claim: Claim, reason: string) => Effect.Effect<boolean, DatabaseError>
  /** Hand claimed tasks back to the queue without consuming an attempt; returns the ids released. */
  readonly release: (workerId: string, claims: ReadonlyArray<Claim>) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  /**
   * Expired leases → retrying (or failed when out of attempts); a task whose
   * handler's start was never recorded → queued, attempt given back (schema/functions/reaper.sql).
   */
  readonly reapExpired: (limit: number) => Effect.Effect<ReadonlyArray<Task>, DatabaseError>
  /** Dead-letter replay: failed → queued, attempts from zero. */
  readonly replay: (id: string) => Effect.Effect<Option.Option<Task>, DatabaseError>
  /** Persist progress and/or checkpoint of a claim; false if it lost its task. */
  readonly recordProgress: (
    workerId: string,
    claim: Claim,
    update: { readonly progress?: JsonValue; readonly checkpoint?: JsonValue }
  ) => Effect.Effect<boolean, DatabaseError | UnstorableValue>
  /** Record that a claimed task's handler starts; false if the claim lost its task. */
  readonly recordStart: (workerId: string, claim: Claim) => Effect.Effect<boolean, DatabaseError>
  /** Status and revision of these tasks (absent ones left out), in one read. */
  readonly statuses: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<TaskState>, DatabaseError>
  readonly stats: Effect.Effect<QueueStats, DatabaseError>
  /**
   * Milliseconds until the next not-yet-due queued or retrying task of these queues
   * (and types, when given) comes due, by the database clock (an app clock ahead of
   * it would wake too early). With `dueWithinMs`, tasks that came due in the last
   * `dueWithinMs` ms count too (the answer is then ≤ 0): a claimer passes the time
   * since its last claim began, so that a task that came due after that claim
   * looked is not left waiting. Paused queues' tasks do not count (QueuePauses): a
   * resume wakes the dispatchers itself.
   */
  readonly msUntilNextDue: (options?: {
    readonly queues?: ReadonlyArray<string> | undefined
    readonly types?: ReadonlyArray<string> | undefined
    readonly dueWithinMs?: number
  }) => Effect.Effect<Option.Option<number>, DatabaseError>
}>()("taskfiber/TaskStore") {}

/**
 * `RETRY_MAX_ATTEMPTS`: the attempt limit of a task whose request names none — a
 * job with no retry policy and no `maxAttempts` of its own, or a producer calling
 * `enqueue` without one. Default 25 (`RetryPolicy.defaults`); at least 1.
 */
export const maxAttemptsConfig: Config.Config<number> = Config.schema(
  Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  "RETRY_MAX_ATTEMPTS"
).pipe(Config.withDefault(RetryPolicy.defaults.maxAttempts))
