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
 * crash just before a single-task completion).
 *
 * One item never costs the others their completion. Results arrive encoded
 * (`StoredJson`: the run that produced an unstorable value failed on its own). A
 * statement that fails anyway is retried, whole, while its error is one worth a
 * retry (connection, deadlock, serialization: up to three more times, 50 ms
 * doubling). One that an item's value can cause (a data exception or a constraint,
 * a value beyond a size limit: {@link isItemFault}) is split in halves, each written
 * on its own, down to the one item that fails, which alone is reported failed. Any
 * other (the statement itself is wrong, say) fails the batch: splitting cannot help.
 * A callback that throws is logged and stops nothing; the writer loop itself is
 * restarted if it dies (BackgroundLoop), and the pending items wait for it.
 *
 * Memory is bounded by the caller: the supervisor holds at most a fixed number of
 * tasks in the instance, and every pending completion is one of them.
 */
import { Cause, Data, Duration, Effect, Exit, Queue, Scope } from "effect"
import type { Claim } from "../domain/Task.ts"
import type { EncodedJson } from "../domain/StoredJson.ts"
import { DatabaseError } from "../store/DatabaseError.ts"
import type { TaskStore } from "../store/TaskStore.ts"
import * as BackgroundLoop from "./BackgroundLoop.ts"

/**
 * The completion committed, but the task was not among those it completed: by
 * then this claim no longer held it (its lease had expired and it was reaped, or it
 * was cancelled). Its success is not recorded; whoever holds it now decides.
 */
export class TaskNotHeld extends Data.TaggedError("TaskNotHeld")<{ readonly taskId: string }> {
  override get message() {
    return `task ${this.taskId} was no longer held by this run (reaped or cancelled); its success is not recorded`
  }
}

/** Resumes after the current macrotask: the fibers made runnable in this round run first. */
const nextRound: Effect.Effect<void> = Effect.callback<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/** `undefined`: committed; otherwise why not (TaskNotHeld, a DatabaseError, or a defect). */
export type CompletionFailure = unknown

interface Item {
  readonly claim: Claim
  readonly result: EncodedJson
  readonly remove: boolean
  readonly done: (failure: CompletionFailure | undefined) => void
}

/** Completes tasks of one worker in batches. */
export interface Completer {
  /**
   * Queues the claim's success; `done` is called once its statement committed (or
   * failed). `remove`: the task was claimed as removeOnComplete (see TaskStore.complete).
   */
  readonly push: (claim: Claim, result: EncodedJson, remove: boolean, done: (failure: CompletionFailure | undefined) => void) => void
  /** The same as an effect: succeeds when the task's completion is committed. */
  readonly complete: (claim: Claim, result: EncodedJson, remove: boolean) => Effect.Effect<void, DatabaseError | TaskNotHeld>
}

/** Retries of a whole batch whose statement failed with an error worth a retry. */
const wholeBatchRetries = 3

const isRetryable = (failure: unknown) => failure instanceof DatabaseError && failure.retryable

/**
 * A failure one item's value can cause: a data exception (22xxx), a constraint
 * (23xxx), a program limit (54xxx: a value too large or too deeply nested).
 */
export const isItemFault = (failure: unknown): boolean =>
  failure instanceof DatabaseError &&
  (failure.category === "data" || failure.category === "constraint" || (failure.sqlstate?.startsWith("54") ?? false))

/** A completer whose writer lives in `scope`; at most `maxBatch` tasks per statement. */
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
    // A callback that throws is logged and stops nothing (inline: a closure per
    // item would be an allocation on every task).
    const report = (item: Item, failure: CompletionFailure | undefined) => {
      try {
        item.done(failure)
      } catch (error) {
        Effect.runFork(Effect.logError("a completion callback threw", { taskId: item.claim.id, error: String(error) }))
      }
    }
    const statement = (batch: ReadonlyArray<Item>) =>
      Effect.exit(Effect.suspend(() =>
        options.store.complete(
          options.workerId,
          batch.map((item) => ({
            id: item.claim.id, revision: item.claim.revision, result: item.result, remove: item.remove, runTraceparent: item.claim.runTraceparent
          }))
        )
      ))
    const write = (batch: ReadonlyArray<Item>, retries = 0): Effect.Effect<void> =>
      Effect.flatMap(statement(batch), (exit) => {
        if (Exit.isSuccess(exit)) {
          // Every claim the statement completed; the others no longer held their task.
          const completed = new Map(exit.value.map((c) => [c.id, c.revision]))
          const done = (item: Item) => completed.get(item.claim.id) === item.claim.revision
          const missing = batch.filter((item) => !done(item))
          if (retries === 0 || missing.length === 0) {
            for (const item of batch) report(item, done(item) ? undefined : new TaskNotHeld({ taskId: item.claim.id }))
            return Effect.void
          }
          // A retried statement: an earlier try may have committed before its
          // connection was lost, and completed them. Completed by this claim: its
          // move to succeeded was the task's next change (or, for a task that leaves
          // on success, the task is gone).
          return Effect.map(Effect.exit(options.store.statuses(missing.map((item) => item.claim.id))), (states) => {
            const now = Exit.isSuccess(states) ? new Map(states.value.map((t) => [t.id, t])) : undefined
            for (const item of batch) {
              const state = now?.get(item.claim.id)
              const earlier = now !== undefined &&
                (state === undefined ? item.remove : state.status === "succeeded" && state.revision === item.claim.revision + 1)
              report(item, done(item) || earlier ? undefined : new TaskNotHeld({ taskId: item.claim.id }))
            }
          })
        }
        const failure = Cause.squash(exit.cause) ?? "completion failed"
        if (isRetryable(failure) && retries < wholeBatchRetries) {
          return Effect.andThen(Effect.sleep(Duration.millis(50 * 2 ** retries)), write(batch, retries + 1))
        }
        if (batch.length > 1 && isItemFault(failure)) {
          const half = Math.ceil(batch.length / 2)
          return Effect.andThen(
            Effect.logWarning("completion batch failed; writing its halves apart", { size: batch.length, error: String(failure) }),
            Effect.andThen(write(batch.slice(0, half)), write(batch.slice(half)))
          )
        }
        for (const item of batch) report(item, failure)
        return Effect.void
      })
    // One statement in flight at a time: completions that arrive while it commits
    // form the next batch (group commit). Before taking a batch the writer lets the
    // runtime finish its current round of fibers (one macrotask), so the tasks that
    // end in the same round share a statement instead of each opening one.
    //
    // Measured (20,000 no-op tasks, PREFETCH=1000, CLAIM_BATCH=500, 10 handlers):
    //   two writers, no wait           ~300 statements, drain 1,100–1,300 ms
    //   one writer, no wait            ~200 statements, ~1,100 ms
    //   one writer, one macrotask      ~160 statements, 1,020–1,050 ms
    // Two writers overlapped statements but halved the batches, and PostgreSQL's
    // cost per statement (plan, locks, commit flush) is what the drain pays for.
    const step = Effect.gen(function*() {
      if (pending.length === 0) yield* Queue.take(wake)
      // From here to the callbacks the writer is uninterruptible: a shutdown
      // interrupts it only while it waits for work, never with a batch in hand.
      yield* Effect.uninterruptible(Effect.flatMap(nextRound, () => {
        const batch = pending.splice(0, options.maxBatch)
        return batch.length > 0 ? write(batch) : Effect.void
      }))
    })
    yield* BackgroundLoop.fork("completion writer", step, options.scope)
    const push = (claim: Claim, result: EncodedJson, remove: boolean, done: (failure: CompletionFailure | undefined) => void) => {
      pending.push({ claim, result, remove, done })
      if (pending.length === 1) Queue.offerUnsafe(wake, undefined)
    }
    return {
      push,
      complete: (claim, result, remove) =>
        Effect.callback<void, DatabaseError | TaskNotHeld>((resume) => {
          push(claim, result, remove, (failure) =>
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
