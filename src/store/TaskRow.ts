/**
 * Rows of `taskfiber.tasks` and `taskfiber.task_events` as the client returns them
 * (snake_case, timestamps as Date, jsonb parsed), and their domain shapes.
 */
import type { LastError } from "../domain/Classification.ts"
import type { ClaimedTask, Task, TaskEvent } from "../domain/Task.ts"
import type { TaskStatus } from "../domain/TaskStatus.ts"

/** `last_error` as stored. */
export type StoredError = LastError
export type { Claim, ClaimedTask, Task, TaskEvent } from "../domain/Task.ts"

/** A row of `taskfiber.tasks`. */
export interface TaskRow {
  readonly id: string
  readonly queue: string
  readonly type: string
  readonly payload: unknown
  readonly priority: number
  readonly status: TaskStatus
  readonly attempt: number
  readonly max_attempts: number
  readonly revision: number
  readonly run_at: Date
  readonly lease_expires_at: Date | null
  readonly worker_id: string | null
  readonly progress: unknown
  readonly checkpoint: unknown
  readonly result: unknown
  readonly last_error: StoredError | null
  readonly dedupe_key: string | null
  readonly created_at: Date
  readonly started_at: Date | null
  readonly finished_at: Date | null
  readonly updated_at: Date
  readonly traceparent: string | null
  readonly remove_on_complete: boolean
}

/** The columns that {@link toClaimedTask} reads (`TaskStore.claimToRun` selects them). */
export interface ClaimedRow
  extends Pick<TaskRow, "id" | "queue" | "type" | "payload" | "attempt" | "max_attempts" | "checkpoint" | "remove_on_complete" | "revision">
{
  readonly handler_started: boolean
  readonly record_start_first: boolean
  readonly traceparent: string | null
  readonly priority: number
  readonly waited_ms: number
}

/** A row of `taskfiber.task_events`. */
export interface TaskEventRow {
  readonly task_id: string
  readonly seq: number
  readonly from_status: TaskStatus | null
  readonly to_status: TaskStatus
  readonly attempt: number
  readonly error: StoredError | null
  readonly worker_id: string | null
  readonly at: Date
}

/** The domain task of a row. */
export const toTask = (r: TaskRow): Task => ({
  id: r.id,
  queue: r.queue,
  type: r.type,
  payload: r.payload as Task["payload"],
  priority: r.priority,
  status: r.status,
  attempt: r.attempt,
  maxAttempts: r.max_attempts,
  revision: r.revision,
  runAt: r.run_at,
  leaseExpiresAt: r.lease_expires_at,
  workerId: r.worker_id,
  progress: r.progress as Task["progress"],
  checkpoint: r.checkpoint as Task["checkpoint"],
  result: r.result as Task["result"],
  lastError: r.last_error,
  dedupeKey: r.dedupe_key,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  updatedAt: r.updated_at,
  traceparent: r.traceparent,
  removeOnComplete: r.remove_on_complete
})

/** The claimed task of a (partial) row. */
export const toClaimedTask = (r: ClaimedRow): ClaimedTask => ({
  id: r.id,
  queue: r.queue,
  type: r.type,
  payload: r.payload as Task["payload"],
  attempt: r.attempt,
  maxAttempts: r.max_attempts,
  checkpoint: r.checkpoint as Task["checkpoint"],
  removeOnComplete: r.remove_on_complete,
  revision: r.revision,
  startRecorded: r.handler_started,
  recordStartFirst: r.record_start_first,
  traceparent: r.traceparent,
  priority: r.priority,
  waitedMs: r.waited_ms
})

/** The domain event of a row. */
export const toTaskEvent = (r: TaskEventRow): TaskEvent => ({
  taskId: r.task_id,
  seq: r.seq,
  from: r.from_status,
  to: r.to_status,
  attempt: r.attempt,
  error: r.error,
  workerId: r.worker_id,
  at: r.at
})
