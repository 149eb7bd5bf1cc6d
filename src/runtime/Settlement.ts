/**
 * Writing a run's outcome: the settling statements, each naming the run's claim,
 * and what their failures mean. A statement that finds the claim no longer holding
 * the task (reaped, or cancelled) changes nothing, and the run is `abandoned`; one
 * that fails (the database is down) abandons it too: the lease expires, the reaper
 * retries it. Nothing is lost either way, and the log says which.
 */
import { Cause, Effect, Exit, type Option } from "effect"
import { type Classification, toLastError } from "../domain/Classification.ts"
import { PermanentError, TransientError, UnstorableValue } from "../domain/Errors.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import type * as StoredJson from "../domain/StoredJson.ts"
import type { ClaimedTask } from "../domain/Task.ts"
import type { Outcome } from "../domain/Outcome.ts"
import { DatabaseError } from "../store/DatabaseError.ts"
import { isItemFault, TaskNotHeld } from "./Completer.ts"
import type { AnyJob } from "./Job.ts"
import type * as ProgressReporter from "./ProgressReporter.ts"
import type { RunControl, RunnerEnv } from "./TaskRunner.ts"

// The settling statement failed (database down): the lease will expire and the
// reaper will retry the task. Nothing is lost; say so. Or the completion found the
// task held no more (reaped or cancelled meanwhile): its holder decides.
const abandoned = (task: ClaimedTask) => (error: unknown) =>
  (error instanceof TaskNotHeld
    ? Effect.logWarning("task succeeded after this run lost it; the success is not recorded", { taskId: task.id })
    : Effect.logError("task not settled; its lease will expire and it will be retried", {
      taskId: task.id,
      error: error instanceof Error ? error.message : String(error)
    })).pipe(Effect.as<Outcome>("abandoned"))

const lost = (task: ClaimedTask, statement: string) =>
  Effect.as(Effect.logWarning(`${statement} not recorded: this run no longer holds the task (reaped or cancelled)`, { taskId: task.id }), "abandoned" as Outcome)

/** The outcome of a settling statement that returns the task it moved, if it still held it. */
export const movedTo = (task: ClaimedTask, statement: string) => (moved: Option.Option<{ readonly status: string }>) =>
  moved._tag === "Some" ? Effect.succeed(moved.value.status as Outcome) : lost(task, statement)

/** Runs a settling effect in a fiber of its own, uninterruptible, then reports. */
export const settleInBackground = (
  env: RunnerEnv,
  task: ClaimedTask,
  onSettled: (outcome: Outcome) => void,
  effect: Effect.Effect<Outcome, DatabaseError>
) => {
  const fiber = Effect.runForkWith(env.context)(effect.pipe(
    Effect.catch(abandoned(task)),
    Effect.annotateLogs({ taskId: task.id, taskType: task.type, attempt: task.attempt }),
    Effect.uninterruptible
  ))
  fiber.addObserver((exit) => onSettled(Exit.isSuccess(exit) ? exit.value : "abandoned"))
}

const flushOf = (reporter: ProgressReporter.ProgressReporter | undefined) => reporter?.flush ?? Effect.void

/**
 * A completion that did not commit. Not held any more: abandoned (its holder
 * decides). A failure of this task's value (the Completer split its batch down to
 * this task alone): failed permanently, saying why. Anything else (the database is
 * unreachable, the statement broken): abandoned, its lease expires.
 */
export const completionFailed = (env: RunnerEnv, task: ClaimedTask, error: unknown): Effect.Effect<Outcome, DatabaseError> =>
  isItemFault(error) && error instanceof DatabaseError
    ? Effect.andThen(
      Effect.logWarning("the result could not be stored; the task fails", { error: error.message }),
      Effect.flatMap(
        env.store.fail(env.workerId, task, toLastError(new PermanentError({ message: `the result could not be stored: ${error.message}` }), "permanent")),
        movedTo(task, "failure")
      )
    )
    : abandoned(task)(error)

export const settleSuccess = (
  env: RunnerEnv,
  task: ClaimedTask,
  result: StoredJson.EncodedJson,
  reporter: ProgressReporter.ProgressReporter | undefined
): Effect.Effect<Outcome, DatabaseError> =>
  Effect.andThen(
    flushOf(reporter),
    env.completer.complete(task, result, task.removeOnComplete).pipe(
      Effect.as<Outcome>("succeeded"),
      Effect.catch((error) => completionFailed(env, task, error))
    )
  )

export const settle = (
  env: RunnerEnv,
  job: AnyJob,
  task: ClaimedTask,
  exit: Exit.Failure<unknown, unknown>,
  reporter: ProgressReporter.ProgressReporter | undefined,
  control: RunControl
): Effect.Effect<Outcome, DatabaseError> =>
  Effect.gen(function*() {
    const { store, workerId } = env
    const why = control.stopReason
    if (Cause.hasInterruptsOnly(exit.cause) && why !== undefined) {
      if (why === "shutdown") {
        yield* flushOf(reporter) // the checkpoint must survive the release
        const released = yield* store.release(workerId, [task])
        return released.includes(task.id) ? "released" as Outcome : yield* lost(task, "release")
      }
      return (why === "cancel" ? "cancelled" : "abandoned") as Outcome
    }
    // A handler that interrupted itself (nobody asked it to stop) has failed like any
    // other: released instead, it would run again for ever without using attempts.
    const failure = Cause.findErrorOption(exit.cause)
    const error: unknown = failure._tag === "Some"
      ? failure.value
      : Cause.hasInterruptsOnly(exit.cause)
      ? new TransientError({ message: "the handler interrupted itself" })
      : Cause.squash(exit.cause)
    // An unstorable value is permanent whatever the job's classifier says: the run
    // would make the same value again.
    const classification: Classification = error instanceof UnstorableValue
      ? "permanent"
      : failure._tag === "Some"
      ? job.classify(error)
      : "transient"
    yield* flushOf(reporter)
    yield* Effect.logWarning("job failed", { classification, error: toLastError(error, classification).message })
    if (classification === "cancelled") {
      return (yield* store.cancelClaimed(workerId, task, toLastError(error, classification).message))
        ? "cancelled" as Outcome
        : yield* lost(task, "cancellation")
    }
    if (classification === "permanent") {
      return yield* Effect.flatMap(store.fail(workerId, task, toLastError(error, classification)), movedTo(task, "failure"))
    }
    const policy = { ...job.retry, maxAttempts: task.maxAttempts }
    const delay = RetryPolicy.nextDelayMs(policy, task.attempt)
    const settled = delay === undefined
      ? yield* store.fail(workerId, task, toLastError(error, classification))
      : yield* store.retry(workerId, task, toLastError(error, classification), delay)
    return yield* movedTo(task, delay === undefined ? "failure" : "retry")(settled)
  })
