/**
 * Batched completion: every task that succeeds while `complete_tasks` statements
 * are in flight is completed by the next one, so a worker draining small tasks
 * writes one statement per batch instead of one per task (graphile-worker's
 * `completeJobBatchDelay: 0`, always on).
 *
 * A task's completion is reported (`push`'s callback, or `complete` resolving) only
 * when its statement has committed, so the runner reports an outcome only once it
 * is durable. What changes is the window of a crash: between a handler's return and
 * the commit of its batch the task is still `running` with a lease; if the process
 * dies there, the lease expires and the task runs again (at-least-once, as for a
 * crash just before a single-task completion). A failed statement fails every
 * completion of its batch; their leases expire the same way.
 *
 * Memory is bounded by the caller: the supervisor holds at most a fixed number of
 * tasks in the instance, and every pending completion is one of them.
 */
import { Cause, Data, Effect, Exit, Queue, Scope } from "effect"
import { DatabaseError } from "../store/DatabaseError.ts"
import type { TaskStore } from "../store/TaskStore.ts"

/**
 * The completion committed, but the task was not among those it completed: by
 * then the worker no longer held it (its lease had expired and it was reaped, or it
 * was cancelled). Its success is not recorded; whoever holds it now decides.
 */
export class TaskNotHeld extends Data.TaggedError("TaskNotHeld")<{ readonly taskId: string }> {
  override get message() {
    return `task ${this.taskId} was no longer held by this worker (reaped or cancelled); its success is not recorded`
  }
}

/** `undefined`: committed; otherwise why not (TaskNotHeld, a DatabaseError, or a defect). */
export type CompletionFailure = unknown

interface Item {
  readonly id: string
  readonly result: unknown
  readonly done: (failure: CompletionFailure | undefined) => void
}

/** Completes tasks of one worker in batches. */
export interface Completer {
  /** Queues the task's success; `done` is called once its statement committed (or failed). */
  readonly push: (id: string, result: unknown, done: (failure: CompletionFailure | undefined) => void) => void
  /** The same as an effect: succeeds when the task's completion is committed. */
  readonly complete: (id: string, result: unknown) => Effect.Effect<void, DatabaseError | TaskNotHeld>
}

/** A completer whose writers live in `scope`; at most `maxBatch` tasks per statement. */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly workerId: string
  readonly maxBatch: number
  readonly scope: Scope.Scope
}): Effect.Effect<Completer> =>
  Effect.gen(function*() {
    const pending: Array<Item> = []
    // A wake-up for an idle writer: one pending signal is enough.
    const wake = yield* Queue.sliding<void>(1)
    const write = (batch: ReadonlyArray<Item>) =>
      Effect.map(
        Effect.exit(options.store.complete(options.workerId, batch.map((item) => ({ id: item.id, result: item.result })))),
        (exit) => {
          if (Exit.isFailure(exit)) {
            const failure = Cause.squash(exit.cause) ?? "completion failed"
            for (const item of batch) item.done(failure)
            return
          }
          // Every id the statement completed; the others were not held any more.
          const completed = new Set(exit.value)
          for (const item of batch) item.done(completed.has(item.id) ? undefined : new TaskNotHeld({ taskId: item.id }))
        }
      )
    const writer = Effect.forever(Effect.gen(function*() {
      if (pending.length === 0) yield* Queue.take(wake)
      const batch = pending.splice(0, options.maxBatch)
      if (pending.length > 0) Queue.offerUnsafe(wake, undefined) // the other writer can start the next batch
      // A batch is written uninterruptibly: a shutdown interrupts a writer while it
      // waits for work, never between a commit and the callbacks.
      if (batch.length > 0) yield* Effect.uninterruptible(write(batch))
    }))
    // Two writers: one statement is built and sent while the other commits, and
    // their batches are disjoint (a task completes once), so they never wait on
    // each other's locks.
    for (let i = 0; i < 2; i++) yield* Effect.forkIn(Effect.interruptible(writer), options.scope)
    const push = (id: string, result: unknown, done: (failure: CompletionFailure | undefined) => void) => {
      pending.push({ id, result, done })
      if (pending.length === 1) Queue.offerUnsafe(wake, undefined)
    }
    return {
      push,
      complete: (id, result) =>
        Effect.callback<void, DatabaseError | TaskNotHeld>((resume) => {
          push(id, result, (failure) =>
            resume(
              failure === undefined
                ? Effect.void
                : failure instanceof DatabaseError || failure instanceof TaskNotHeld
                ? Effect.fail(failure)
                : Effect.die(failure)
            ))
        })
    }
  })
