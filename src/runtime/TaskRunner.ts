/**
 * Runs one claimed task and settles it: one store call per outcome.
 *
 *   success                  → complete (result stored; batched with others, see Completer)
 *   transient or timeout     → retry at now() + the policy's delay, or fail when out of attempts
 *   permanent                → fail (dead letter)
 *   handler gave up (TaskCancelled) → cancelled
 *   interrupted by cancel    → nothing: the database already says cancelled
 *   interrupted by shutdown  → release: back to queued, attempt not consumed
 *   interrupted by lease loss → nothing: the task belongs to another worker now
 *
 * Crash between the handler's end and the settling statement: the lease expires,
 * the reaper makes the task retrying, it runs again (at-least-once; the handler
 * sees `attempt` and its last checkpoint).
 */
import { Cause, Duration, Effect, Exit, Fiber, Ref, Schema } from "effect"
import { type Classification, toLastError } from "../domain/Classification.ts"
import { PayloadInvalid, TaskTimeout, TransientError, UnknownTaskType } from "../domain/Errors.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import type { Task } from "../domain/Task.ts"
import type { TaskStore } from "../store/TaskStore.ts"
import type { Completer } from "./Completer.ts"
import type { AnyJob } from "./Job.ts"
import type { JobRegistry } from "./JobRegistry.ts"
import * as ProgressReporter from "./ProgressReporter.ts"
import type { RuntimeConfig } from "./RuntimeConfig.ts"

/** Why a job fiber was interrupted from outside. */
export type StopReason = "cancel" | "shutdown" | "lease-lost"

/**
 * How the supervisor stops a run: it sets `stop`, then interrupts `handler`, the
 * fiber of the handler alone. The runner's own fiber is never interrupted, so an
 * interrupt cannot land in the middle of its database calls.
 */
export interface RunControl {
  readonly stop: Ref.Ref<StopReason | undefined>
  handler?: Fiber.Fiber<unknown, unknown>
  /** Run once the handler has ended, before the outcome is written: its slot is free. */
  readonly onHandlerEnd: Effect.Effect<void>
}

/** Stops a run: the handler is interrupted; the runner then settles the task. */
export const requestStop = (control: RunControl, reason: StopReason) =>
  Effect.gen(function*() {
    yield* Ref.set(control.stop, reason)
    const fiber = control.handler
    // Fire and forget: the caller (heartbeat, cancel bus) must not wait for a
    // handler that is slow to stop.
    if (fiber) yield* Effect.sync(() => fiber.interruptUnsafe())
  })

/** What the runner needs from its supervisor. */
export interface RunnerEnv {
  readonly store: TaskStore["Service"]
  readonly registry: JobRegistry["Service"]
  readonly config: RuntimeConfig
  readonly workerId: string
  /** Batched success (see Completer). */
  readonly completer: Completer
  /** Reporters of the running tasks, flushed by the supervisor's progress flusher. */
  readonly reporters: Set<ProgressReporter.ProgressReporter>
}

/** The outcome written for a task (for logs and tests). */
export type Outcome = "succeeded" | "retrying" | "failed" | "cancelled" | "released" | "abandoned"

const failedBeforeRun = (env: RunnerEnv, task: Task, error: unknown) =>
  env.store.fail(env.workerId, task.id, toLastError(error, "permanent")).pipe(Effect.as<Outcome>("failed"))

/** Runs `task` (claimed by `env.workerId`) and settles it. Never fails. */
export const run = (env: RunnerEnv, task: Task, control: RunControl) =>
  Effect.gen(function*() {
    const job = env.registry.get(task.type)
    if (job === undefined) return yield* failedBeforeRun(env, task, new UnknownTaskType({ taskType: task.type }))
    const decoded = Schema.decodeUnknownExit(job.payload)(task.payload)
    if (Exit.isFailure(decoded)) {
      const schemaError = Cause.findErrorOption(decoded.cause)
      return yield* failedBeforeRun(env, task, schemaError._tag === "Some"
        ? PayloadInvalid.fromSchemaError(task.type, schemaError.value)
        : new PayloadInvalid({ taskType: task.type, path: "", message: "payload could not be decoded" }))
    }
    return yield* runJob(env, job, task, decoded.value, control)
  }).pipe(
    Effect.catch((error) =>
      // The settling statement failed (database down): the lease will expire and the
      // reaper will retry the task. Nothing is lost; say so.
      Effect.logError("task not settled; its lease will expire and it will be retried", {
        taskId: task.id,
        error: error.message
      }).pipe(Effect.as<Outcome>("abandoned"))
    ),
    Effect.annotateLogs({ taskId: task.id, taskType: task.type, attempt: task.attempt }),
    Effect.withSpan(`taskfiber.run ${task.type}`, {
      attributes: { "taskfiber.task_id": task.id, "taskfiber.attempt": task.attempt, "taskfiber.queue": task.queue }
    }, { captureStackTrace: false }) // a stack trace per task costs an Error object; the name says where
  )

// The handler runs in a child fiber of its own, explicitly interruptible (a fiber
// forked while a layer is built inherits an uninterruptible region); this fiber
// awaits it and then writes the outcome, uninterruptibly.
const runJob = (env: RunnerEnv, job: AnyJob, task: Task, payload: unknown, control: RunControl) =>
  Effect.suspend(() => {
    const reporter = ProgressReporter.make({ store: env.store, workerId: env.workerId, taskId: task.id })
    env.reporters.add(reporter)
    return Effect.ensuring(runHandler(env, job, task, payload, control, reporter), Effect.sync(() => env.reporters.delete(reporter)))
  }).pipe(Effect.uninterruptible)

const runHandler = (
  env: RunnerEnv,
  job: AnyJob,
  task: Task,
  payload: unknown,
  control: RunControl,
  reporter: ProgressReporter.ProgressReporter
) =>
  Effect.gen(function*() {
    const timeout = job.timeout ?? env.config.jobTimeout
    const span = yield* Effect.currentParentSpan.pipe(Effect.orDie)
    const handler = Effect.suspend(() =>
      job.run(payload, {
        taskId: task.id,
        attempt: task.attempt,
        maxAttempts: task.maxAttempts,
        checkpoint: task.checkpoint,
        progress: reporter.progress,
        saveCheckpoint: reporter.saveCheckpoint,
        span
      })
    ).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => Effect.fail(new TaskTimeout({ taskId: task.id, timeoutMs: Duration.toMillis(timeout) }))
      })
    )
    const fiber = yield* Effect.forkChild(Effect.interruptible(handler))
    control.handler = fiber
    // A stop requested before the handler existed takes effect now.
    if ((yield* Ref.get(control.stop)) !== undefined) fiber.interruptUnsafe()
    const exit = yield* Fiber.await(fiber)
    yield* control.onHandlerEnd
    return yield* settle(env, job, task, exit, reporter, control.stop)
  })

const settle = (
  env: RunnerEnv,
  job: AnyJob,
  task: Task,
  exit: Exit.Exit<unknown, unknown>,
  reporter: ProgressReporter.ProgressReporter,
  stopReason: Ref.Ref<StopReason | undefined>
) =>
  Effect.gen(function*() {
    const { store, workerId } = env
    if (Exit.isSuccess(exit)) {
      yield* reporter.flush
      yield* env.completer.complete(task.id, exit.value === undefined ? null : exit.value)
      return "succeeded" as Outcome
    }
    const why = yield* Ref.get(stopReason)
    if (Cause.hasInterruptsOnly(exit.cause) && why !== undefined) {
      if (why === "shutdown") {
        yield* reporter.flush // the checkpoint must survive the release
        yield* store.release(workerId, [task.id])
        return "released" as Outcome
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
    const classification: Classification = failure._tag === "Some" ? job.classify(error) : "transient"
    yield* reporter.flush
    yield* Effect.logWarning("job failed", { classification, error: toLastError(error, classification).message })
    if (classification === "cancelled") {
      yield* store.cancel([task.id], toLastError(error, classification).message)
      return "cancelled" as Outcome
    }
    if (classification === "permanent") {
      yield* store.fail(workerId, task.id, toLastError(error, classification))
      return "failed" as Outcome
    }
    const policy = { ...job.retry, maxAttempts: task.maxAttempts }
    const delay = RetryPolicy.nextDelayMs(policy, task.attempt)
    const settled = delay === undefined
      ? yield* store.fail(workerId, task.id, toLastError(error, classification))
      : yield* store.retry(workerId, task.id, toLastError(error, classification), delay)
    return (settled._tag === "Some" ? settled.value.status : "abandoned") as Outcome
  })
