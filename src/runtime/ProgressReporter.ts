/**
 * Throttled persistence of a running task's progress and checkpoint: a handler may
 * report 10,000 times a second; reports only replace the pending values in memory.
 * The supervisor's one progress flusher writes every task's pending values once per
 * `PROGRESS_INTERVAL`, and the runner flushes once more when the run ends — so a
 * task's row is written at most once per interval (plus that last time), always
 * with the latest values, and no fiber per task is needed.
 */
import { Effect, Ref, Semaphore } from "effect"
import type { TaskStore } from "../store/TaskStore.ts"

interface Pending {
  readonly progress?: unknown
  readonly checkpoint?: unknown
}

/** A task's reporter: what the handler calls, and what the flusher and runner write. */
export interface ProgressReporter {
  readonly progress: (value: unknown) => Effect.Effect<void>
  readonly saveCheckpoint: (value: unknown) => Effect.Effect<void>
  /** Writes the pending values, if any (one statement). */
  readonly flush: Effect.Effect<void>
}

/** A reporter for one run of a task. */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly workerId: string
  readonly taskId: string
}): Effect.Effect<ProgressReporter> =>
  Effect.gen(function*() {
    const pending = yield* Ref.make<Pending>({})
    // Flusher and runner never write the same task at once (order of values).
    const lock = yield* Semaphore.make(1)
    const flush = lock.withPermit(Effect.gen(function*() {
      const update = yield* Ref.getAndSet(pending, {})
      if (!("progress" in update) && !("checkpoint" in update)) return
      yield* options.store.recordProgress(options.workerId, options.taskId, update).pipe(
        Effect.andThen(Effect.logDebug("progress saved", { taskId: options.taskId, checkpoint: "checkpoint" in update })),
        Effect.catch((error) => Effect.logWarning("progress not saved", { taskId: options.taskId, error: error.message }))
      )
    }))
    return {
      progress: (value) => Ref.update(pending, (p) => ({ ...p, progress: value })),
      saveCheckpoint: (value) => Ref.update(pending, (p) => ({ ...p, checkpoint: value })),
      flush
    }
  })
