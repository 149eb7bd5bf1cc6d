/**
 * Throttled persistence of a running task's progress and checkpoint: a handler may
 * report 10,000 times a second; reports only replace the pending values in memory.
 * The supervisor's one progress flusher writes every task's pending values once per
 * `PROGRESS_INTERVAL`, and the runner flushes once more when the run ends — so a
 * task's row is written at most once per interval (plus that last time), always
 * with the latest values, and no fiber per task is needed.
 *
 * A value is encoded when it is reported (`StoredJson`): one that cannot be stored
 * fails the handler's `progress` or `saveCheckpoint` call with `UnstorableValue`,
 * in the run that made it, and the shared flusher only ever writes text that
 * encoded. Each write names the run's claim, so a run that lost its task writes
 * nothing. A write that fails because the database is unreachable keeps its values
 * pending (unless newer ones came meanwhile) for the next flush, and says so at
 * Debug only: the outage is the duties' one line (Outages), not a warning per task
 * per interval.
 */
import { Effect, Semaphore } from "effect"
import type { UnstorableValue } from "../domain/Errors.ts"
import * as Outages from "../observability/Outages.ts"
import * as StoredJson from "../domain/StoredJson.ts"
import type { Claim } from "../domain/Task.ts"
import type { TaskStore } from "../store/TaskStore.ts"

interface Pending {
  readonly progress?: StoredJson.EncodedJson
  readonly checkpoint?: StoredJson.EncodedJson
}

/** A task's reporter: what the handler calls, and what the flusher and runner write. */
export interface ProgressReporter {
  readonly progress: (value: unknown) => Effect.Effect<void, UnstorableValue>
  readonly saveCheckpoint: (value: unknown) => Effect.Effect<void, UnstorableValue>
  /** Writes the pending values, if any (one statement). Never fails: a failed write is logged. */
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
  readonly claim: Claim
  readonly active: Set<ProgressReporter>
  /** Told each progress value written (the runtime's Progress event). */
  readonly saved?: ((progress: unknown) => void) | undefined
}): ProgressReporter => {
  let pending: Pending = {}
  // The value behind pending.progress, for `saved`.
  let progressValue: unknown
  let hasPending = false
  // Flusher and runner never write the same task at once (order of values): the
  // lock and the write exist from the first report on; before that there is
  // nothing to write.
  let locked: Effect.Effect<void> | undefined
  const taskId = options.claim.id
  const write = () =>
    Effect.suspend(() => {
      if (!hasPending) return Effect.void
      const update = pending
      const value = progressValue
      pending = {}
      hasPending = false
      return options.store.recordProgress(options.workerId, options.claim, update).pipe(
        Effect.flatMap((held) => {
          if (!held) return Effect.logDebug("progress not saved: this run no longer holds the task", { taskId })
          if (update.progress !== undefined && options.saved !== undefined) options.saved(value)
          return Effect.logDebug("progress saved", { taskId, checkpoint: "checkpoint" in update })
        }),
        Effect.catchCause((cause) => {
          const failure = Outages.classify(cause)
          if (failure._tag !== "Unreachable") return Effect.logWarning("progress not saved", { taskId }, cause)
          pending = { ...update, ...pending }
          hasPending = true
          return Effect.logDebug("progress not saved yet: database unreachable", { taskId, reason: failure.reason })
        })
      )
    })
  const report = (key: keyof Pending, value: unknown) =>
    Effect.suspend(() => {
      const encoded = StoredJson.encode(value, key)
      if (!(encoded instanceof StoredJson.EncodedJson)) return Effect.fail(encoded)
      pending = { ...pending, [key]: encoded }
      if (key === "progress") progressValue = value
      hasPending = true
      if (locked === undefined) {
        locked = Semaphore.makeUnsafe(1).withPermit(write())
        options.active.add(reporter)
      }
      return Effect.void
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
