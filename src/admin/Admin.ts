/**
 * `Admin`: the operator's operations — find, cancel and retry tasks, read and
 * replay dead letters, the queues' depth, the registered jobs — once, for every
 * front end: the `taskfiber` binary's commands today, an admin HTTP API and a
 * dashboard later. Each is a thin composition of the store services; what can go
 * wrong that an operator can act on is a tagged error (`TaskNotFound`,
 * `TaskNotFailed`, `DeadLetterNotFound`, `NotReplayable`), never a defect.
 *
 * No operation needs a running supervisor: a cancellation reaches a running task's
 * worker through the CancelBus when one is in this process, and otherwise at that
 * worker's next heartbeat (its claim is no longer the task's).
 */
import { Context, Data, Duration, Effect, Layer, Option, Schema, Stream } from "effect"
import * as JsonSchema from "effect/JsonSchema"
import { SqlClient } from "effect/sql/SqlClient"
import { CancelBus } from "../coordination/CancelBus.ts"
import type { PriorityBand } from "../domain/Priority.ts"
import { isUuid } from "../domain/Task.ts"
import { isTerminal, type TaskStatus } from "../domain/TaskStatus.ts"
import { readDepth } from "../observability/Sampler.ts"
import type { AnyJob } from "../runtime/Job.ts"
import { JobRegistry } from "../runtime/JobRegistry.ts"
import { type DatabaseError, mapSqlError } from "../store/DatabaseError.ts"
import { type DeadLetter, type DeadLetterListOptions, type DeadLetterPage, DeadLetters, type UnreplayedKey } from "../store/DeadLetters.ts"
import type { Task } from "../store/TaskRow.ts"
import { type ListOptions, type TaskPage, TaskStore, type TaskWithEvents } from "../store/TaskStore.ts"
import { QueuePauses } from "../store/QueuePauses.ts"
import type { InvalidCursor } from "../store/Cursor.ts"

export type { DeadLetter, DeadLetterListOptions, DeadLetterPage } from "../store/DeadLetters.ts"
export type { ListOptions, TaskPage, TaskWithEvents } from "../store/TaskStore.ts"

// ---------------------------------------------------------------------------
// errors

/** No task has this id. */
export class TaskNotFound extends Data.TaggedError("TaskNotFound")<{ readonly id: string }> {
  override get message(): string {
    return `no task with id ${this.id}`
  }
}

/** A retry of a task that is not failed: only a failed task goes back to the queue. */
export class TaskNotFailed extends Data.TaggedError("TaskNotFailed")<{ readonly id: string; readonly status: TaskStatus }> {
  override get message(): string {
    return `task ${this.id} is ${this.status}, not failed: only a failed task can be retried`
  }
}

/** No dead letter has this id. */
export class DeadLetterNotFound extends Data.TaggedError("DeadLetterNotFound")<{ readonly id: string }> {
  override get message(): string {
    return `no dead letter with id ${this.id}`
  }
}

/** A dead letter with no task behind it (an undecodable Kafka message): nothing to replay. */
export class NotReplayable extends Data.TaggedError("NotReplayable")<{ readonly id: string; readonly source: string }> {
  override get message(): string {
    return `dead letter ${this.id} is input from ${this.source} that never became a task, so it cannot be replayed as one ` +
      `(fix the producer and send it again)`
  }
}

// ---------------------------------------------------------------------------
// results

/** What {@link Admin.cancelTask} did. */
export type CancelResult =
  /** Cancelled now; a running task's handler is interrupted. */
  | { readonly _tag: "Cancelled"; readonly id: string; readonly previousStatus: TaskStatus }
  /** It had ended already (succeeded, failed or cancelled): nothing changed. */
  | { readonly _tag: "AlreadyFinal"; readonly id: string; readonly status: TaskStatus }

/** A dead letter replayed: the letter, and its task queued again. */
export interface ReplayedLetter {
  readonly letter: DeadLetter
  readonly task: Task
}

/** Where a {@link Admin.replayAll} stands: one after it counted, then one per batch. */
export interface ReplayProgress {
  /** The failed tasks' letters not yet replayed when it began. */
  readonly total: number
  /** Tasks queued again so far. */
  readonly replayed: number
  /** Letters whose task is gone or no longer failed (replayed meanwhile by another hand). */
  readonly skipped: number
}

/** One queue's work in waiting and running (see {@link Admin.queues}). */
export interface QueueSummary {
  readonly queue: string
  /** Tasks by status (queued, retrying, running) and priority band; no entry for none. */
  readonly depth: ReadonlyArray<{ readonly status: "queued" | "retrying" | "running"; readonly band: PriorityBand; readonly tasks: number; readonly ready: number }>
  /** Queued or retrying. */
  readonly waiting: number
  /** Of them, due now. */
  readonly ready: number
  readonly running: number
  /** How long the oldest due task has waited past its run_at, by the database clock; null when none is due. */
  readonly oldestReadyMs: number | null
  /** Paused (QueuePauses): since when and why; null while it is claimed. */
  readonly paused: { readonly since: Date; readonly reason: string | undefined } | null
}

/** A registered job type (see {@link Admin.jobs}). */
export interface JobInfo {
  readonly name: string
  /** Its default queue. */
  readonly queue: string
  /** Every queue its tasks may be in, `queue` first. */
  readonly queues: ReadonlyArray<string>
  readonly priority: number
  /** Its own attempt limit; null: the store's (`RETRY_MAX_ATTEMPTS`). */
  readonly maxAttempts: number | null
  /** Its per-run limit; null: `JOB_TIMEOUT`. */
  readonly timeoutMs: number | null
  readonly removeOnComplete: boolean
  /** The payload's JSON as JSON Schema (draft 2020-12): what an enqueue must send. */
  readonly payloadSchema: JsonSchema.JsonSchema
}

// ---------------------------------------------------------------------------
// the service

/** The operator's operations (see module doc). */
export class Admin extends Context.Service<Admin, {
  /** A page of tasks in id order (oldest first for taskfiber's ids), filtered. */
  readonly listTasks: (options?: ListOptions) => Effect.Effect<TaskPage, DatabaseError | InvalidCursor>
  /** A task with its history. */
  readonly getTask: (id: string) => Effect.Effect<TaskWithEvents, TaskNotFound | DatabaseError>
  /** Cancels a queued, retrying or running task; one that ended already is left as it is, and said so. */
  readonly cancelTask: (id: string, reason?: string) => Effect.Effect<CancelResult, TaskNotFound | DatabaseError>
  /** A failed task back to the queue, its attempts from zero and its checkpoint kept (the dead-letter replay). */
  readonly retryTask: (id: string) => Effect.Effect<Task, TaskNotFound | TaskNotFailed | DatabaseError>
  /** A page of dead letters, newest first: failed tasks and input that never became a task. */
  readonly listDeadLetters: (options?: DeadLetterListOptions) => Effect.Effect<DeadLetterPage, DatabaseError | InvalidCursor>
  /** Replays the failed task behind a dead letter. */
  readonly replayDeadLetter: (
    id: string
  ) => Effect.Effect<ReplayedLetter, DeadLetterNotFound | NotReplayable | TaskNotFound | TaskNotFailed | DatabaseError>
  /**
   * Replays every failed task (of `type`, when given) whose letter was there when
   * the stream began, `batchSize` (default 100) at a time: memory is one batch,
   * however many failed, and a task that fails again meanwhile is not replayed a
   * second time. Each element is the progress so far, the first one before any replay.
   */
  readonly replayAll: (options?: { readonly type?: string | undefined; readonly batchSize?: number | undefined }) => Stream.Stream<ReplayProgress, DatabaseError>
  /** Every queue with work waiting or running, and every registered job's queue (empty ones too), by name. */
  readonly queues: Effect.Effect<ReadonlyArray<QueueSummary>, DatabaseError>
  /** The registered job types, by name. */
  readonly jobs: ReadonlyArray<JobInfo>
}>()("taskfiber/Admin") {}

/** How many times a cancel is tried while the task keeps moving between the cancel and the look at its status. */
const cancelTries = 3

/** A standalone JSON Schema document of a job's payload (its definitions under `$defs`). */
export const payloadJsonSchema = (job: AnyJob): JsonSchema.JsonSchema => {
  const document = Schema.toJsonSchemaDocument(job.payload)
  return {
    $schema: JsonSchema.META_SCHEMA_URI_DRAFT_2020_12,
    ...document.schema,
    ...(Object.keys(document.definitions).length === 0 ? {} : { $defs: document.definitions })
  }
}

/** What {@link Admin.jobs} says of `job`. */
const jobInfo = (job: AnyJob): JobInfo => ({
  name: job.name,
  queue: job.queue,
  queues: job.queues,
  priority: job.priority,
  maxAttempts: job.maxAttempts ?? null,
  timeoutMs: job.timeout === undefined ? null : Duration.toMillis(job.timeout),
  removeOnComplete: job.removeOnComplete,
  payloadSchema: payloadJsonSchema(job)
})

const make = Effect.gen(function*() {
  const store = yield* TaskStore
  const letters = yield* DeadLetters
  const pauses = yield* QueuePauses
  const registry = yield* JobRegistry
  const sql = yield* SqlClient
  const bus = Option.getOrUndefined(yield* Effect.serviceOption(CancelBus))
  const jobs = [...registry.jobs].sort((a, b) => a.name.localeCompare(b.name)).map(jobInfo)

  const statusOf = (id: string) => Effect.map(store.statuses([id]), (rows) => Option.fromNullishOr(rows[0]?.status))

  const getTask = Effect.fn("Admin.getTask")(function*(id: string) {
    const found = yield* store.get(id)
    if (Option.isNone(found)) return yield* new TaskNotFound({ id })
    return found.value
  })

  const cancelTask = Effect.fn("Admin.cancelTask")(function*(
    id: string,
    reason = "cancelled by an operator"
  ): Effect.fn.Return<CancelResult, TaskNotFound | DatabaseError> {
    if (!isUuid(id)) return yield* new TaskNotFound({ id }) // no task has it (and the uuid casts would fail on it)
    for (let tries = 1;; tries++) {
      const [cancelled] = yield* store.cancel([id], reason)
      if (cancelled !== undefined) {
        if (cancelled.previousStatus === "running" && bus !== undefined) yield* bus.publish(id)
        return { _tag: "Cancelled", id, previousStatus: cancelled.previousStatus }
      }
      const status = yield* statusOf(id)
      if (Option.isNone(status)) return yield* new TaskNotFound({ id })
      // Not cancellable and not final: replayed between the two reads; cancel that.
      if (isTerminal(status.value) || tries >= cancelTries) {
        return { _tag: "AlreadyFinal", id, status: status.value }
      }
    }
  })

  // The replay first, the status only when it did nothing: one statement when it works.
  const retryTask = Effect.fn("Admin.retryTask")(function*(id: string) {
    if (!isUuid(id)) return yield* new TaskNotFound({ id })
    const replayed = yield* store.replay(id)
    if (Option.isSome(replayed)) return replayed.value
    const status = yield* statusOf(id)
    if (Option.isNone(status)) return yield* new TaskNotFound({ id })
    return yield* new TaskNotFailed({ id, status: status.value })
  })

  const replayDeadLetter = Effect.fn("Admin.replayDeadLetter")(function*(id: string) {
    const found = yield* letters.get(id)
    if (Option.isNone(found)) return yield* new DeadLetterNotFound({ id })
    const letter = found.value
    if (letter.source !== "task" || letter.taskId === null) return yield* new NotReplayable({ id, source: letter.source })
    const task = yield* retryTask(letter.taskId)
    return { letter, task }
  })

  const replayAll = (options: { readonly type?: string | undefined; readonly batchSize?: number | undefined } = {}) => {
    const batchSize = Math.min(1000, Math.max(1, Math.floor(options.batchSize ?? 100)))
    return Stream.unwrap(Effect.map(letters.countUnreplayed(options.type), ({ count, upToMicros }) => {
      const first: ReplayProgress = { total: count, replayed: 0, skipped: 0 }
      type State = { readonly progress: ReplayProgress; readonly after: UnreplayedKey | undefined }
      const batch = (state: State) =>
        Effect.gen(function*() {
          const page = yield* letters.unreplayed({ type: options.type, upToMicros, after: state.after, limit: batchSize })
          if (page.length === 0) return [[], Option.none<State>()] as const
          // A few at a time: each replay is one short statement, and this runs beside the workers.
          const done = yield* Effect.forEach(page, (l) => Effect.map(store.replay(l.taskId), Option.isSome), { concurrency: 4 })
          const replayed = done.filter(Boolean).length
          const progress: ReplayProgress = {
            total: Math.max(count, state.progress.replayed + state.progress.skipped + page.length),
            replayed: state.progress.replayed + replayed,
            skipped: state.progress.skipped + page.length - replayed
          }
          const next: State = { progress, after: page[page.length - 1]!.key }
          return [[progress], page.length < batchSize ? Option.none<State>() : Option.some(next)] as const
        }).pipe(Effect.withSpan("Admin.replayAll.batch", { attributes: { "taskfiber.count": batchSize } }))
      return Stream.concat(Stream.succeed(first), Stream.paginate<State, ReplayProgress, DatabaseError>({ progress: first, after: undefined }, batch))
    }))
  }

  const queues = Effect.gen(function*() {
    const { depth, oldestReady } = yield* mapSqlError(readDepth(sql))
    const byQueue = new Map<string, Array<QueueSummary["depth"][number]>>()
    for (const q of registry.queues) byQueue.set(q, [])
    const paused = new Map((yield* pauses.paused).map((p) => [p.queue, p]))
    for (const q of paused.keys()) if (!byQueue.has(q)) byQueue.set(q, [])
    for (const d of depth) {
      const rows = byQueue.get(d.queue) ?? []
      rows.push({ status: d.status, band: d.band, tasks: d.tasks, ready: d.ready })
      byQueue.set(d.queue, rows)
    }
    const oldest = new Map(oldestReady.map((o) => [o.queue, o.ageMs]))
    const statusOrder: ReadonlyArray<string> = ["queued", "retrying", "running"]
    const bandOrder: ReadonlyArray<string> = ["high", "normal", "low"]
    return [...byQueue].sort(([a], [b]) => a.localeCompare(b)).map(([queue, rows]): QueueSummary => {
      const sorted = rows.sort((a, b) => statusOrder.indexOf(a.status) - statusOrder.indexOf(b.status) || bandOrder.indexOf(a.band) - bandOrder.indexOf(b.band))
      const sum = (f: (r: typeof rows[number]) => number) => rows.reduce((n, r) => n + f(r), 0)
      return {
        queue,
        depth: sorted,
        waiting: sum((r) => (r.status === "running" ? 0 : r.tasks)),
        ready: sum((r) => r.ready),
        running: sum((r) => (r.status === "running" ? r.tasks : 0)),
        oldestReadyMs: oldest.get(queue) ?? null,
        paused: Option.match(Option.fromNullishOr(paused.get(queue)), {
          onNone: () => null,
          onSome: (p) => ({ since: p.pausedAt, reason: p.reason })
        })
      }
    })
  }).pipe(Effect.withSpan("Admin.queues"))

  return Admin.of({
    listTasks: (options) => store.list(options).pipe(Effect.withSpan("Admin.listTasks")),
    getTask,
    cancelTask,
    retryTask,
    listDeadLetters: (options) => letters.list(options).pipe(Effect.withSpan("Admin.listDeadLetters")),
    replayDeadLetter,
    replayAll,
    queues,
    jobs
  })
})

/** The operations over the store services; a CancelBus in the context is told of running tasks cancelled. */
export const layer: Layer.Layer<Admin, never, TaskStore | DeadLetters | QueuePauses | JobRegistry | SqlClient> = Layer.effect(Admin, make)
