/**
 * The graceful shutdown of one supervisor, run when its scope closes and before
 * its loops are interrupted:
 *
 * 1. stop claiming; a claim in flight finishes (what it takes is held first);
 * 2. hand the buffered (prefetched, never started) tasks back to the queue, attempt
 *    given back;
 * 3. let running jobs finish for SHUTDOWN_GRACE;
 * 4. interrupt the rest: each runner releases its task to `queued` (checkpoint kept,
 *    attempt not consumed), waited for one more grace; a handler that ignores the
 *    interruption (an uninterruptible section, a synchronous loop) is left to its
 *    lease and retried after it expires;
 * 5. leave the worker registry.
 *
 * Every wait is bounded by SHUTDOWN_GRACE. A crash at any step loses nothing: a
 * task not yet released keeps its lease, expires, and is reaped (retried, or handed
 * back unstarted).
 */
import { Deferred, Duration, Effect, Fiber, Scope } from "effect"
import type { Context } from "effect"
import type { RuntimeEvent, StopReason } from "../observability/RuntimeEvents.ts"
import type { TaskStore } from "../store/TaskStore.ts"
import type { Dispatcher } from "./Dispatcher.ts"
import type { HeldTask, LocalQueue } from "./LocalQueue.ts"

/** What the shutdown needs of its supervisor. */
export interface ShutdownOptions {
  readonly grace: Duration.Duration
  readonly store: TaskStore["Service"]
  readonly local: LocalQueue
  readonly workerId: string
  readonly dispatcher: Dispatcher
  readonly stop: (entry: HeldTask, reason: StopReason) => void
  readonly emit: (event: RuntimeEvent) => void
  /** The registry renewal's fiber: stopped before the removal, so it cannot put the row back. */
  readonly registration: Fiber.Fiber<unknown, unknown>
  readonly deregister: Effect.Effect<void>
  /** The supervisor's services: the shutdown runs on the fiber that closes the scope, and logs as the supervisor does. */
  readonly context: Context.Context<never>
}

/** Adds the shutdown to `scope` (to run before the finalizers added earlier). */
export const install = (scope: Scope.Scope, options: ShutdownOptions): Effect.Effect<void> =>
  Scope.addFinalizer(scope, Effect.provideContext(run(options), options.context))

const run = (options: ShutdownOptions) =>
  Effect.gen(function*() {
    const { local, grace } = options
    const graceMs = Duration.toMillis(grace)
    /** Waits for `what` at most one grace; past it, says so and goes on. */
    const bounded = (what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.asVoid,
        Effect.timeoutOrElse({
          duration: grace,
          orElse: () => Effect.logWarning(`shutting down: gave up waiting for ${what}`, { graceMs })
        })
      )

    yield* options.dispatcher.stop.pipe(bounded("the dispatcher's claim in flight"))

    const unstarted = local.takeBuffered()
    if (unstarted.length > 0) {
      yield* options.store.release(options.workerId, unstarted.map((e) => e.task)).pipe(
        Effect.tap((taskIds) => Effect.sync(() => options.emit({ _tag: "Released", workerId: options.workerId, taskIds }))),
        Effect.catch((error) =>
          Effect.logWarning("prefetched tasks not released; their leases will expire", { count: unstarted.length, error: error.message })
        ),
        bounded("the release of prefetched tasks")
      )
    }

    // An entry still held has not settled yet (settling removes it), so a Deferred
    // made now is completed when it settles. All are made before the first wait:
    // made one by one as the waits went, an entry that settled meanwhile would get
    // its Deferred too late, and the shutdown would wait for it for ever.
    const allSettled = () =>
      Effect.suspend(() => {
        const settled = local.unsettled().map((r) => (r.settled ??= Deferred.makeUnsafe<void>()))
        return Effect.forEach(settled, Deferred.await, { discard: true })
      }).pipe(Effect.timeoutOrElse({ duration: grace, orElse: () => Effect.void }))

    if (local.unsettled().length > 0) {
      yield* Effect.logInfo("shutting down: waiting for running jobs", { running: local.unsettled().length, graceMs })
      yield* allSettled()
    }
    if (local.unsettled().length > 0) {
      yield* Effect.logInfo("shutting down: releasing unfinished jobs to the queue", { running: local.unsettled().length })
      for (const entry of local.unsettled()) options.stop(entry, "shutdown")
      yield* allSettled()
      const stuck = local.unsettled()
      if (stuck.length > 0) {
        yield* Effect.logError("shutting down: jobs did not stop when interrupted; their leases will expire and they will be retried", {
          taskIds: stuck.map((e) => e.task.id)
        })
      }
    }

    yield* Fiber.interrupt(options.registration)
    yield* options.deregister.pipe(bounded("the worker registry's update"))
  })
