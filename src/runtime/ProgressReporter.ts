/**
 * Throttled persistence of a running task's progress and checkpoint: a handler may
 * report 10,000 times a second; reports only replace the pending values in memory.
 * The supervisor's one progress flusher writes every task's pending values once per
 * `PROGRESS_INTERVAL`, and the runner flushes once more when the run ends — so a
 * task's row is written at most once per interval (plus that last time), always
 * with the latest values, and no fiber per task is needed.
 */
import { Effect, Semaphore } from "effect"
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
  /** True once the handler has reported anything (then the end of the run flushes). */
  readonly used: boolean
}

/**
 * A reporter for one run of a task. Plain state, no fiber, and nothing beyond the
 * object and its two report functions until the handler first reports: most
 * handlers never do, and a worker draining thousands of tasks a second pays
 * nothing more for the feature. On its first report it joins `active`, the set
 * the supervisor's flusher writes.
 */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly workerId: string
  readonly taskId: string
  readonly active: Set<ProgressReporter>
}): ProgressReporter => {
  let pending: Pending = {}
  let hasPending = false
  // Flusher and runner never write the same task at once (order of values): the
  // lock and the write exist from the first report on; before that there is
  // nothing to write.
  let locked: Effect.Effect<void> | undefined
  const write = () =>
    Effect.suspend(() => {
      if (!hasPending) return Effect.void
      const update = pending
      pending = {}
      hasPending = false
      return options.store.recordProgress(options.workerId, options.taskId, update).pipe(
        Effect.andThen(Effect.logDebug("progress saved", { taskId: options.taskId, checkpoint: "checkpoint" in update })),
        Effect.catch((error) => Effect.logWarning("progress not saved", { taskId: options.taskId, error: error.message }))
      )
    })
  const report = (key: keyof Pending, value: unknown) =>
    Effect.sync(() => {
      pending = { ...pending, [key]: value }
      hasPending = true
      if (locked === undefined) {
        locked = Semaphore.makeUnsafe(1).withPermit(write())
        options.active.add(reporter)
      }
    })
  const reporter: ProgressReporter = {
    progress: (value) => report("progress", value),
    saveCheckpoint: (value) => report("checkpoint", value),
    get flush() {
      return locked ?? Effect.void
    },
    get used() {
      return locked !== undefined
    }
  }
  return reporter
}
