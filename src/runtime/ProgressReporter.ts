/**
 * Throttled persistence of a running task's progress and checkpoint: a handler may
 * report 10,000 times a second; the row is written at most once per interval, with
 * the latest values, and once more by `flush` when the run ends.
 */
import { Duration, Effect, Queue, Ref, Semaphore } from "effect"
import type { Scope } from "effect"
import type { TaskStore } from "../store/TaskStore.ts"

interface Pending {
  readonly progress?: unknown
  readonly checkpoint?: unknown
}

/** A task's reporter: what the handler calls, and what the runner flushes. */
export interface ProgressReporter {
  readonly progress: (value: unknown) => Effect.Effect<void>
  readonly saveCheckpoint: (value: unknown) => Effect.Effect<void>
  /** Writes what is still pending (before the run is settled or released). */
  readonly flush: Effect.Effect<void>
  /** Row writes so far (for tests and metrics). */
  readonly writes: Effect.Effect<number>
}

/** Starts a reporter whose writer fiber lives as long as the scope. */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly workerId: string
  readonly taskId: string
  readonly interval: Duration.Duration
}): Effect.Effect<ProgressReporter, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pending = yield* Ref.make<Pending>({})
    const writes = yield* Ref.make(0)
    // Capacity 1, sliding: a burst of reports is one wake-up of the writer.
    const dirty = yield* Queue.sliding<void>(1)
    const write = Effect.gen(function*() {
      const update = yield* Ref.getAndSet(pending, {})
      if (!("progress" in update) && !("checkpoint" in update)) return
      yield* Ref.update(writes, (n) => n + 1)
      yield* options.store.recordProgress(options.workerId, options.taskId, update).pipe(
        Effect.catch((error) => Effect.logWarning("progress not saved", { taskId: options.taskId, error: error.message }))
      )
    })
    // One writer fiber: write, then rest for the interval, whatever the call rate.
    const lock = yield* Semaphore.make(1)
    yield* Effect.forkScoped(
      Effect.forever(Queue.take(dirty).pipe(
        Effect.andThen(lock.withPermit(write)),
        Effect.andThen(Effect.sleep(options.interval))
      ))
    )
    const report = (patch: Pending) => Ref.update(pending, (p) => ({ ...p, ...patch })).pipe(Effect.andThen(Queue.offer(dirty, undefined)), Effect.asVoid)
    return {
      progress: (value) => report({ progress: value }),
      saveCheckpoint: (value) => report({ checkpoint: value }),
      flush: lock.withPermit(write),
      writes: Ref.get(writes)
    }
  })
