/**
 * The runtime's events as log lines: one worker's events, logged with the services
 * (logger, minimum level) of the fiber that starts it — the supervisor's.
 *
 *   Settled  → Info  "task settled" (taskId, taskType, attempt, outcome)
 *   Released → Info  "shutting down: prefetched tasks released to the queue"
 *   Reaped   → Warn  "task reaped: its lease expired" / "task reaped unstarted: …"
 *   Stopped  → Debug "run stopped"
 *
 * Lines are written off the path that frees job slots, from bounded sliding queues
 * (a flood drops the oldest lines, never blocks a run): "task settled" from one,
 * the rare lines (reaped, released, stopped) from their own, so that no burst of
 * settled runs can push a warning out. A kind below the minimum level is not even
 * queued.
 */
import { Context, Effect, LogLevel, Option, Queue, References, Scope } from "effect"
import type { RuntimeEvent, RuntimeEventTag } from "./RuntimeEvents.ts"
import { RuntimeEvents } from "./RuntimeEvents.ts"

/** "task settled" lines waiting for the logger. */
const settledBacklog = 10_000

/** Other lines waiting (each a whole reaper batch at most). */
const noticeBacklog = 1_000

const logEvent = (event: RuntimeEvent): Effect.Effect<void> => {
  switch (event._tag) {
    case "Settled": {
      const { task, outcome } = event
      return Effect.logInfo("task settled", { taskId: task.id, taskType: task.type, attempt: task.attempt, outcome })
    }
    case "Released":
      return Effect.logInfo("shutting down: prefetched tasks released to the queue", { count: event.taskIds.length })
    case "Reaped":
      return Effect.forEach(event.tasks, (task) =>
        task.status === "queued"
          ? Effect.logWarning("task reaped unstarted: handed back to the queue, attempt kept", { taskId: task.id })
          : Effect.logWarning("task reaped: its lease expired", { taskId: task.id, status: task.status, lastError: task.lastError?.message }),
        { discard: true })
    case "Stopped":
      return Effect.logDebug("run stopped", { taskId: event.task.id, reason: event.reason })
    default:
      return Effect.void
  }
}

/** A running log of one worker's events. */
export interface EventLog {
  /** Logs what is still queued (the shutdown's last step, once every task settled). */
  readonly flush: Effect.Effect<void>
}

/** Logs the events of `workerId` until `scope` closes. */
export const start = (workerId: string, scope: Scope.Scope): Effect.Effect<EventLog, never, RuntimeEvents> =>
  Effect.gen(function*() {
    const events = yield* RuntimeEvents
    const level = Context.get(yield* Effect.context<never>(), References.MinimumLogLevel)
    const tags: Array<RuntimeEventTag> = []
    if (LogLevel.isGreaterThanOrEqualTo("Warn", level)) tags.push("Reaped")
    if (LogLevel.isGreaterThanOrEqualTo("Info", level)) tags.push("Settled", "Released")
    if (LogLevel.isGreaterThanOrEqualTo("Debug", level)) tags.push("Stopped")
    const settled = yield* Queue.sliding<RuntimeEvent>(settledBacklog)
    const notices = yield* Queue.sliding<RuntimeEvent>(noticeBacklog)
    yield* events.subscribe(tags, (event) => {
      if (event.workerId === workerId) Queue.offerUnsafe(event._tag === "Settled" ? settled : notices, event)
    }).pipe(Scope.provide(scope))
    // An entry taken is always logged (taking and logging are one step for an
    // interrupt); `flush` logs what is left. A logger that throws costs its line,
    // never the loop.
    const drain = (queue: Queue.Queue<RuntimeEvent>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(Queue.takeAll(queue)), (all) =>
          Effect.forEach(all, (e) => Effect.catchCause(logEvent(e), () => Effect.void), { discard: true })))
    yield* Effect.forkIn(Effect.forever(drain(notices)), scope)
    yield* Effect.forkIn(Effect.forever(drain(settled)), scope)
    const flushQueue = (queue: Queue.Queue<RuntimeEvent>) =>
      Effect.gen(function*() {
        while (true) {
          const next = yield* Queue.poll(queue)
          if (Option.isNone(next)) return
          yield* logEvent(next.value)
        }
      })
    const flush = Effect.andThen(flushQueue(notices), flushQueue(settled))
    return { flush }
  })
