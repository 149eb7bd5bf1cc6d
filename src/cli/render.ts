/**
 * How `taskfiber status` shows a task: one JSON object (`--json`) or a short
 * human summary with its history.
 */
import type { TaskWithEvents } from "../store/TaskStore.ts"
import type { WorkerInfo } from "../store/Workers.ts"

/**
 * Who could run a waiting (queued or retrying) task: the live workers that serve
 * its queue and type, and all live workers (to say what they serve when none does).
 * Absent for a task that is not waiting.
 */
interface Serving {
  readonly servedBy: ReadonlyArray<string>
  readonly live: ReadonlyArray<WorkerInfo>
}

/** The live workers that serve `task`'s queue and type. */
export const servingOf = (task: TaskWithEvents["task"], live: ReadonlyArray<WorkerInfo>): Serving => ({
  servedBy: live.filter((w) => w.queues.includes(task.queue) && w.types.includes(task.type)).map((w) => w.id),
  live
})

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString())

/** The task as one JSON-ready object (snake_case, like the table), events included. */
export const toJson = ({ events, task }: TaskWithEvents, serving?: Serving) => ({
  id: task.id,
  type: task.type,
  queue: task.queue,
  status: task.status,
  attempt: task.attempt,
  max_attempts: task.maxAttempts,
  priority: task.priority,
  payload: task.payload,
  result: task.result,
  last_error: task.lastError,
  progress: task.progress,
  checkpoint: task.checkpoint,
  dedupe_key: task.dedupeKey,
  worker_id: task.workerId,
  run_at: iso(task.runAt),
  lease_expires_at: iso(task.leaseExpiresAt),
  created_at: iso(task.createdAt),
  started_at: iso(task.startedAt),
  finished_at: iso(task.finishedAt),
  updated_at: iso(task.updatedAt),
  /** Waiting tasks: the live workers that serve its queue and type (empty: none will run it). */
  served_by: serving === undefined ? null : serving.servedBy,
  events: events.map((e) => ({
    seq: e.seq,
    from: e.from,
    to: e.to,
    attempt: e.attempt,
    error: e.error,
    worker_id: e.workerId,
    at: iso(e.at)
  }))
})

const json = (v: unknown): string => (v === null || v === undefined ? "-" : JSON.stringify(v))
const time = (d: Date | null): string => (d === null ? "-" : d.toISOString())

/** A few lines for a terminal. */
export const toText = ({ events, task }: TaskWithEvents, serving?: Serving): string => {
  const lines = [
    `task       ${task.id}`,
    `type       ${task.type} (queue ${task.queue}, priority ${task.priority})`,
    `status     ${task.status}, attempt ${task.attempt} of ${task.maxAttempts}`,
    `run at     ${time(task.runAt)}`,
    `created    ${time(task.createdAt)}   started ${time(task.startedAt)}   finished ${time(task.finishedAt)}`,
    `payload    ${json(task.payload)}`
  ]
  if (serving !== undefined) {
    if (serving.servedBy.length > 0) {
      lines.push(`waiting    served by ${serving.servedBy.length} live worker${serving.servedBy.length === 1 ? "" : "s"}`)
    } else {
      const what = serving.live.map((w) => `${w.id} (queues ${w.queues.join(", ")}; types ${w.types.join(", ")})`)
      lines.push(
        `waiting    no live worker serves queue "${task.queue}" with type "${task.type}": it waits until one does`,
        `           ${what.length === 0 ? "no worker is running" : `live workers: ${what.join("; ")}`}`
      )
    }
  }
  if (task.progress !== null) lines.push(`progress   ${json(task.progress)}`)
  if (task.checkpoint !== null) lines.push(`checkpoint ${json(task.checkpoint)}`)
  if (task.result !== null) lines.push(`result     ${json(task.result)}`)
  if (task.lastError !== null) {
    lines.push(`last error ${task.lastError.tag} (${task.lastError.classification}): ${task.lastError.message}`)
  }
  lines.push("events:")
  for (const e of events) {
    const move = e.from === null ? e.to : `${e.from} -> ${e.to}`
    const error = e.error === null ? "" : `  ${e.error.tag}: ${e.error.message}`
    lines.push(`  ${time(e.at)}  ${move} (attempt ${e.attempt})${error}`)
  }
  return lines.join("\n")
}
