/**
 * The runtime's events as log lines: one worker's events, logged with the services
 * (logger, minimum level) of the fiber that starts it — the supervisor's.
 *
 *   Settled  → Info  "task settled" (taskId, taskType, attempt, outcome)
 *   Released → Info  "shutting down: prefetched tasks released to the queue"
 *   Reaped   → Warn  "task reaped: its lease expired" / "… handed back unstarted"
 *   Stopped  → Debug "run stopped"
 *
 * "task settled" is logged by one fiber, off the path that frees job slots, from a
 * bounded sliding queue (a flood drops the oldest lines, never blocks a run); when
 * Info is below the minimum level nothing is queued for it at all.
 */
import { Context, Effect, LogLevel, Option, Queue, References, Scope } from "effect"
import type { RuntimeEvent, RuntimeEventTag } from "./RuntimeEvents.ts"
import { RuntimeEvents } from "./RuntimeEvents.ts"

type Settled = Extract<RuntimeEvent, { readonly _tag: "Settled" }>

/** Lines waiting for the logger fiber. */
const backlog = 10_000

const logSettled = ({ task, outcome }: Settled) =>
  Effect.logInfo("task settled", { taskId: task.id, taskType: task.type, attempt: task.attempt, outcome })

const logNow = (event: RuntimeEvent): Effect.Effect<void> => {
  switch (event._tag) {
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

/**
 * Logs the events of `workerId` until `scope` closes. Lines other than "task
 * settled" are rare and logged at once, on a fiber of their own.
 */
export const start = (workerId: string, scope: Scope.Scope): Effect.Effect<EventLog, never, RuntimeEvents> =>
  Effect.gen(function*() {
    const events = yield* RuntimeEvents
    const context = yield* Effect.context<never>()
    const level = Context.get(context, References.MinimumLogLevel)
    const logsSettled = LogLevel.isGreaterThanOrEqualTo("Info", level)
    const logsDebug = LogLevel.isGreaterThanOrEqualTo("Debug", level)
    const settled = yield* Queue.sliding<Settled>(backlog)
    const run = Effect.runForkWith(context)
    const tags: Array<RuntimeEventTag> = ["Released", "Reaped"]
    if (logsSettled) tags.push("Settled")
    if (logsDebug) tags.push("Stopped")
    yield* events.subscribe(tags, (event) => {
      if (event.workerId !== workerId) return
      if (event._tag === "Settled") Queue.offerUnsafe(settled, event)
      else run(logNow(event))
    }).pipe(Scope.provide(scope))
    // An entry taken is always logged (taking and logging are one step for an
    // interrupt); `flush` logs what is left.
    const logger = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.takeAll(settled)), (all) => Effect.forEach(all, logSettled, { discard: true })))
    // Logging cannot fail, so a plain loop (not a BackgroundLoop) serves.
    yield* Effect.forkIn(Effect.forever(logger), scope)
    const flush = Effect.gen(function*() {
      while (true) {
        const next = yield* Queue.poll(settled)
        if (Option.isNone(next)) return
        yield* logSettled(next.value)
      }
    })
    return { flush }
  })
