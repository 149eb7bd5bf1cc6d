/**
 * How the operator's commands (`list`, `dlq list`, `queues`, `dlq replay --all`)
 * print: aligned tables for a terminal, one JSON object (`--json`, snake_case like
 * `status --json`), and the replay's progress.
 */
import type { DeadLetter, DeadLetterPage, QueueSummary, ReplayProgress, TaskPage } from "../admin/Admin.ts"
import { priorityBands } from "../domain/Priority.ts"
import type { Task } from "../store/TaskRow.ts"

/** Rows under a header, each column as wide as its widest cell; the last column is not padded. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString())

/** A duration for a table: 850ms, 12.3s, 4m 05s, 2h 10m, 3d 4h. */
export const age = (ms: number): string => {
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.floor(ms / 1000)
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
}

/** A cell of at most `max` characters on one line. */
const cell = (text: string, max: number): string => {
  const one = text.replace(/\s+/g, " ")
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`
}

// ---------------------------------------------------------------------------
// list

/** One task of `list --json`. */
const taskJson = (t: Task) => ({
  id: t.id,
  type: t.type,
  queue: t.queue,
  status: t.status,
  attempt: t.attempt,
  max_attempts: t.maxAttempts,
  priority: t.priority,
  run_at: iso(t.runAt),
  created_at: iso(t.createdAt),
  updated_at: iso(t.updatedAt),
  last_error: t.lastError
})

/** `list --json`: the page and the cursor of the next (null on the last). */
export const taskPageJson = (page: TaskPage) => ({ tasks: page.tasks.map(taskJson), next_cursor: page.nextCursor ?? null })

/** `list`: the table, and how to ask for the next page. */
export const taskPageText = (page: TaskPage, nextCommand: (cursor: string) => string): string => {
  if (page.tasks.length === 0) return "no tasks"
  const rows = page.tasks.map((t) => [t.id, t.type, t.queue, t.status, `${t.attempt}/${t.maxAttempts}`, String(t.priority), t.updatedAt.toISOString()])
  const text = table(["ID", "TYPE", "QUEUE", "STATUS", "ATTEMPT", "PRIORITY", "UPDATED"], rows)
  return page.nextCursor === undefined ? text : `${text}\nmore: ${nextCommand(page.nextCursor)}`
}

// ---------------------------------------------------------------------------
// dlq list

const letterJson = (l: DeadLetter) => ({
  id: l.id,
  source: l.source,
  task_id: l.taskId,
  queue: l.queue,
  type: l.type,
  reason: l.reason,
  error: l.error,
  attempt: l.attempt,
  created_at: iso(l.createdAt),
  replayed_at: iso(l.replayedAt),
  kafka: l.kafka
})

/** `dlq list --json`. */
export const deadLetterPageJson = (page: DeadLetterPage) => ({
  dead_letters: page.letters.map(letterJson),
  next_cursor: page.nextCursor ?? null
})

/** `dlq list`: newest first; a Kafka letter's task column says where it came from. */
export const deadLetterPageText = (page: DeadLetterPage, nextCommand: (cursor: string) => string): string => {
  if (page.letters.length === 0) return "no dead letters"
  const rows = page.letters.map((l) => [
    l.id,
    l.source,
    l.type ?? "-",
    l.taskId ?? (l.kafka === null ? "-" : `${l.kafka.topic}[${l.kafka.partition ?? "?"}]@${l.kafka.offset ?? "?"}`),
    l.createdAt.toISOString(),
    l.replayedAt === null ? "-" : l.replayedAt.toISOString(),
    cell(l.reason, 80)
  ])
  const text = table(["ID", "SOURCE", "TYPE", "TASK", "CREATED", "REPLAYED", "REASON"], rows)
  return page.nextCursor === undefined ? text : `${text}\nmore: ${nextCommand(page.nextCursor)}`
}

// ---------------------------------------------------------------------------
// queues

/** `queues --json`. */
export const queuesJson = (queues: ReadonlyArray<QueueSummary>) => ({
  queues: queues.map((q) => ({
    queue: q.queue,
    waiting: q.waiting,
    ready: q.ready,
    running: q.running,
    oldest_ready_ms: q.oldestReadyMs,
    paused: q.paused === null ? null : { since: q.paused.since.toISOString(), reason: q.paused.reason ?? null },
    depth: q.depth
  }))
})

/**
 * `queues`: one row a queue — waiting tasks by status and by priority band (the
 * bands of queued and retrying together), due ones, running, the oldest due one's wait.
 */
export const queuesText = (queues: ReadonlyArray<QueueSummary>): string => {
  if (queues.length === 0) return "no queues: no task is waiting or running"
  const rows = queues.map((q) => {
    const of = (f: (d: QueueSummary["depth"][number]) => boolean) => String(q.depth.filter(f).reduce((n, d) => n + d.tasks, 0))
    return [
      q.queue,
      of((d) => d.status === "queued"),
      of((d) => d.status === "retrying"),
      ...priorityBands.map((band) => of((d) => d.status !== "running" && d.band === band)),
      String(q.ready),
      String(q.running),
      q.oldestReadyMs === null ? "-" : age(q.oldestReadyMs),
      q.paused === null ? "-" : `paused${q.paused.reason === undefined ? "" : ` (${q.paused.reason})`}`
    ]
  })
  return table(["QUEUE", "QUEUED", "RETRYING", "HIGH", "NORMAL", "LOW", "READY", "RUNNING", "OLDEST READY", "PAUSED"], rows)
}

// ---------------------------------------------------------------------------
// dlq replay --all

/** A progress bar of `width` cells: `[#####.....]  50/100`. */
export const progressBar = (p: ReplayProgress, width = 30): string => {
  const done = p.replayed + p.skipped
  const filled = p.total === 0 ? width : Math.min(width, Math.round((done / p.total) * width))
  const count = `${done}/${p.total}`.padStart(2 * String(p.total).length + 1)
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${count}${p.skipped === 0 ? "" : ` (${p.skipped} skipped)`}`
}

/** One line of progress where there is no terminal to redraw. */
export const progressLine = (p: ReplayProgress): string =>
  `replaying: ${p.replayed + p.skipped} of ${p.total} done (${p.replayed} replayed, ${p.skipped} skipped)`

/** The summary of a replay of them all. */
export const replaySummary = (p: ReplayProgress, type: string | undefined): string =>
  `replayed ${p.replayed} failed task${p.replayed === 1 ? "" : "s"}${type === undefined ? "" : ` of type ${type}`}` +
  (p.skipped === 0 ? "" : `; skipped ${p.skipped} (task gone, or no longer failed)`)
