/**
 * Batched completion: every task that succeeds while `complete_tasks` statements
 * are in flight is completed by the next one, so a worker draining small tasks
 * writes one statement per batch instead of one per task (graphile-worker's
 * `completeJobBatchDelay: 0`, always on).
 *
 * A runner's `complete` resolves only when its task's statement has committed, so
 * the runner still reports an outcome only once it is durable. What changes is the
 * window of a crash: between a handler's return and the commit of its batch the
 * task is still `running` with a lease; if the process dies there, the lease
 * expires and the task runs again (at-least-once, as for a crash just before a
 * single-task completion). A failed statement fails every completion of its batch;
 * their leases expire the same way.
 */
import { Deferred, Effect, Exit, Queue, Scope } from "effect"
import type { DatabaseError } from "../store/DatabaseError.ts"
import type { TaskStore } from "../store/TaskStore.ts"

interface Item {
  readonly id: string
  readonly result: unknown
  readonly done: Deferred.Deferred<void, DatabaseError>
}

/** Completes tasks of one worker in batches. */
export interface Completer {
  /** Succeeds the task with `result`; resolves when that is committed. */
  readonly complete: (id: string, result: unknown) => Effect.Effect<void, DatabaseError>
}

/**
 * A completer whose flusher lives in `scope`. At most `maxBatch` tasks per
 * statement; at most `capacity` waiting (a runner offering more waits: the queue is
 * bounded, so a slow database slows the workers instead of growing memory).
 */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly workerId: string
  readonly maxBatch: number
  readonly capacity: number
  readonly scope: Scope.Scope
}): Effect.Effect<Completer> =>
  Effect.gen(function*() {
    const pending = yield* Queue.bounded<Item>(options.capacity)
    const write = (batch: ReadonlyArray<Item>) => Effect.gen(function*() {
      const exit = yield* Effect.exit(
        options.store.complete(options.workerId, batch.map((item) => ({ id: item.id, result: item.result })))
      )
      const outcome = Exit.asVoid(exit)
      for (const item of batch) yield* Deferred.done(item.done, outcome)
    })
    // A batch is written uninterruptibly: a shutdown interrupts the flusher while it
    // waits for work, never between a commit and the runners hearing of it.
    const flusher = Effect.forever(Effect.flatMap(
      Queue.takeBetween(pending, 1, options.maxBatch),
      (batch) => Effect.uninterruptible(write(batch))
    ))
    // Two writers: one statement is built and sent while the other commits, and
    // their batches are disjoint (a task completes once), so they never wait on
    // each other's locks.
    for (let i = 0; i < 2; i++) yield* Effect.forkIn(Effect.interruptible(flusher), options.scope)
    return {
      complete: (id, result) =>
        Effect.gen(function*() {
          const done = yield* Deferred.make<void, DatabaseError>()
          yield* Queue.offer(pending, { id, result, done })
          yield* Deferred.await(done)
        })
    }
  })
