/**
 * The runtime's events as log lines, each naming its worker: a subscriber of
 * RuntimeEvents, logging with the services (logger, minimum level) of the layer
 * that builds it. Built beside the event hub (`Taskfiber.runtimeServices`), it
 * closes after the supervisors built on it, and logs what is still queued then.
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
import { Context, Effect, Layer, LogLevel, Option, Queue, References, Scope } from "effect"
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
      return Effect.logInfo("task settled", { taskId: task.id, taskType: task.type, attempt: task.attempt, outcome, workerId: event.workerId })
    }
    case "Released":
      return Effect.logInfo("shutting down: prefetched tasks released to the queue", { count: event.taskIds.length, workerId: event.workerId })
    case "Reaped":
      return Effect.forEach(event.tasks, (task) =>
        task.status === "queued"
          ? Effect.logWarning("task reaped unstarted: handed back to the queue, attempt given back", { taskId: task.id, workerId: event.workerId })
          : Effect.logWarning("task reaped: its lease expired", {
            taskId: task.id, status: task.status, lastError: task.lastError?.message, workerId: event.workerId
          }),
        { discard: true })
    case "Stopped":
      return Effect.logDebug("run stopped", { taskId: event.task.id, reason: event.reason, workerId: event.workerId })
    case "IngressBatchCommitted": {
      const { _tag, ...fields } = event
      return Effect.logDebug("kafka batch committed", fields)
    }
    case "IngressPaused":
      return Effect.logWarning("kafka partition paused until the database answers", { topic: event.topic, partition: event.partition, offset: event.offset })
    case "IngressResumed":
      return Effect.logInfo("kafka partition resumed", { topic: event.topic, partition: event.partition })
    case "RelayPublished":
      return Effect.logDebug("status events published", { count: event.count })
    default:
      return Effect.void
  }
}

/** Logs the runtime's events until `scope` closes, then what is still queued. */
const start = (scope: Scope.Scope): Effect.Effect<void, never, RuntimeEvents> =>
  Effect.gen(function*() {
    const events = yield* RuntimeEvents
    const level = Context.get(yield* Effect.context<never>(), References.MinimumLogLevel)
    const tags: Array<RuntimeEventTag> = []
    if (LogLevel.isGreaterThanOrEqualTo("Warn", level)) tags.push("Reaped", "IngressPaused")
    if (LogLevel.isGreaterThanOrEqualTo("Info", level)) tags.push("Settled", "Released", "IngressResumed")
    if (LogLevel.isGreaterThanOrEqualTo("Debug", level)) tags.push("Stopped", "IngressBatchCommitted", "RelayPublished")
    const settled = yield* Queue.sliding<RuntimeEvent>(settledBacklog)
    const notices = yield* Queue.sliding<RuntimeEvent>(noticeBacklog)
    yield* events.subscribe(tags, (event) => {
      Queue.offerUnsafe(event._tag === "Settled" ? settled : notices, event)
    }).pipe(Scope.provide(scope))
    // A logger that throws costs its line, never the loop nor the last flush.
    const logSafely = (event: RuntimeEvent) => Effect.catchCause(logEvent(event), () => Effect.void)
    const flushQueue = (queue: Queue.Queue<RuntimeEvent>) =>
      Effect.gen(function*() {
        while (true) {
          const next = yield* Queue.poll(queue)
          if (Option.isNone(next)) return
          yield* logSafely(next.value)
        }
      })
    // Added before the loggers start, so it runs after they are stopped: the lines
    // queued by the last runs of a shutdown are written.
    yield* Scope.addFinalizer(scope, Effect.andThen(flushQueue(notices), flushQueue(settled)))
    // An entry taken is always logged (taking and logging are one step for an interrupt).
    const drain = (queue: Queue.Queue<RuntimeEvent>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(Queue.takeAll(queue)), (all) => Effect.forEach(all, logSafely, { discard: true })))
    yield* Effect.forkIn(Effect.forever(drain(notices)), scope)
    yield* Effect.forkIn(Effect.forever(drain(settled)), scope)
  })

/** The event log for as long as the layer lives. */
export const layer: Layer.Layer<never, never, RuntimeEvents> = Layer.effectDiscard(
  Effect.flatMap(Effect.scope, start)
)
