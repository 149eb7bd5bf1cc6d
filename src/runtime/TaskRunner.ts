/**
 * Runs one claimed task and settles it: one store call per outcome.
 *
 *   success                  → complete (result stored; batched with others, see Completer)
 *   success, unstorable result → fail (UnstorableValue, permanent)
 *   transient or timeout     → retry at now() + the policy's delay, or fail when out of attempts
 *   permanent                → fail (dead letter)
 *   handler gave up (TaskCancelled) → cancelled
 *   interrupted by cancel    → nothing: the database already says cancelled
 *   interrupted by shutdown  → release: back to queued, attempt not consumed
 *   interrupted by lease loss → nothing: the task belongs to another claim now
 *
 * Every statement names the run's claim (fencing): one that finds the claim no
 * longer holding the task (it stalled past its lease and was reaped, or it was
 * cancelled) changes nothing, and the run is reported `abandoned`.
 *
 * Crash between the handler's end and the settling statement: the lease expires,
 * the reaper makes the task retrying, it runs again (at-least-once; the handler
 * sees `attempt` and its last checkpoint).
 *
 * One fiber per task: the handler's. Its end is observed by a callback, and the
 * common outcome — success with no progress to write — goes straight to the
 * Completer; only the rare ones (failures, stops, pending progress) start a fiber
 * of their own to write. The handler's timeout (a deadline on the supervisor's one
 * timer, see Deadlines) interrupts it. This
 * keeps the runtime's own cost per task to a few microseconds, so a worker can run
 * tens of thousands of short tasks a second.
 */
import { Cause, Context, Duration, Effect, Exit, Fiber, Option, References, Schema, Tracer } from "effect"
import { type Classification, toLastError } from "../domain/Classification.ts"
import { PayloadInvalid, PermanentError, TaskTimeout, TransientError, UnknownTaskType, UnstorableValue } from "../domain/Errors.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import * as StoredJson from "../domain/StoredJson.ts"
import type { ClaimedTask } from "../domain/Task.ts"
import { DatabaseError } from "../store/DatabaseError.ts"
import type { TaskStore } from "../store/TaskStore.ts"
import { type Completer, isItemFault, TaskNotHeld } from "./Completer.ts"
import type { Deadlines } from "./Deadlines.ts"
import type { AnyJob } from "./Job.ts"
import type { JobContext } from "./JobContext.ts"
import type { JobRegistry } from "./JobRegistry.ts"
import * as ProgressReporter from "./ProgressReporter.ts"
import type { RuntimeConfig } from "./RuntimeConfig.ts"

/** Why a job fiber was interrupted from outside. */
export type StopReason = "cancel" | "shutdown" | "lease-lost"

/**
 * How the supervisor stops a run: it sets `stopReason`, then interrupts `handler`,
 * the fiber of the handler alone. Writing the outcome happens outside that fiber,
 * so an interrupt cannot land in the middle of a database call.
 */
export interface RunControl {
  stopReason: StopReason | undefined
  handler?: Fiber.Fiber<unknown, unknown>
}

/**
 * Stops a run: the handler is interrupted; the runner then settles the task. The
 * first reason stays: a run cancelled and then found without its lease (the
 * cancellation took it) or caught by the shutdown is reported cancelled, and a
 * cancelled task is never released back to the queue.
 */
export const stopUnsafe = (control: RunControl, reason: StopReason): void => {
  control.stopReason ??= reason
  // Fire and forget: the caller (heartbeat, cancel bus) must not wait for a
  // handler that is slow to stop.
  control.handler?.interruptUnsafe()
}

/** {@link stopUnsafe} as an effect. */
export const requestStop = (control: RunControl, reason: StopReason) => Effect.sync(() => stopUnsafe(control, reason))

/** What the runner needs from its supervisor. */
export interface RunnerEnv {
  readonly store: TaskStore["Service"]
  readonly registry: JobRegistry["Service"]
  readonly config: RuntimeConfig
  readonly workerId: string
  /** Batched success (see Completer). */
  readonly completer: Completer
  /** Reporters of the running tasks that reported, flushed by the supervisor's progress flusher. */
  readonly reporters: Set<ProgressReporter.ProgressReporter>
  /** The supervisor's services (logger, tracer, levels): handler fibers and settling fibers run with them. */
  readonly context: Context.Context<never>
  /** The handlers' timeouts. */
  readonly deadlines: Deadlines
  /** A tracing backend is installed in `context` (see {@link tracingIn}): each run gets a span. */
  readonly tracing: boolean
}

/**
 * Whether `context` holds a tracer that exports spans. Effect's default, the
 * native tracer, keeps spans in memory and hands them to nobody; a span per run
 * for it cost about a third of the runtime's CPU per task (a 20,000-task drain:
 * 707 → 470 ms of worker CPU, medians of eight alternating runs), for nothing any
 * backend could see. Effect documents this comparison for exactly that purpose.
 */
export const tracingIn = (context: Context.Context<never>): boolean =>
  Context.get(context, References.TracerEnabled) && Context.get(context, Tracer.Tracer) !== Tracer.nativeTracer

/** The outcome written for a task (for logs and tests). */
export type Outcome = "succeeded" | "retrying" | "failed" | "cancelled" | "released" | "abandoned"

/**
 * What the supervisor hears of a run, told which run: one hooks object serves every
 * run (a pair of closures per task was an allocation the runtime can do without).
 */
export interface RunHooks<C extends RunControl = RunControl> {
  /** The handler has ended (its slot is free); the outcome is not written yet. */
  readonly onHandlerEnd: (control: C) => void
  /** The outcome is written (or could not be: "abandoned"). Called exactly once. */
  readonly onSettled: (control: C, outcome: Outcome) => void
}

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
const movedTo = (task: ClaimedTask, statement: string) => (moved: Option.Option<{ readonly status: string }>) =>
  moved._tag === "Some" ? Effect.succeed(moved.value.status as Outcome) : lost(task, statement)

/** Runs a settling effect in a fiber of its own, uninterruptible, then reports. */
const settleInBackground = (
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

/**
 * Starts `task` (claimed by `env.workerId`): its handler's fiber starts at once, in
 * this call (it runs until it first waits, or to its end); `hooks` hear of its end
 * and of its settled outcome. Never throws.
 */
export const start = <C extends RunControl>(env: RunnerEnv, task: ClaimedTask, control: C, hooks: RunHooks<C>): void => {
  if (task.recordStartFirst && !task.startRecorded) return startRecorded(env, task, control, hooks)
  const job = env.registry.get(task.type)
  const failBeforeRun = (error: unknown) => {
    hooks.onHandlerEnd(control)
    settleInBackground(env, task, (outcome) => hooks.onSettled(control, outcome),
      Effect.flatMap(env.store.fail(env.workerId, task, toLastError(error, "permanent")), movedTo(task, "failure")))
  }
  if (job === undefined) return failBeforeRun(new UnknownTaskType({ taskType: task.type }))
  const decoded = Schema.decodeUnknownExit(job.payload)(task.payload)
  if (Exit.isFailure(decoded)) {
    const schemaError = Cause.findErrorOption(decoded.cause)
    return failBeforeRun(schemaError._tag === "Some"
      ? PayloadInvalid.fromSchemaError(task.type, schemaError.value)
      : new PayloadInvalid({ taskType: task.type, path: "", message: "payload could not be decoded" }))
  }
  runHandler(env, job, task, decoded.value, control, hooks)
}

/**
 * A task handed back unstarted before (its worker crashed while holding it in its
 * buffer): its start is recorded before its handler runs, so that a task that
 * crashes its worker at once uses up its attempts (schema/011). Rare: one
 * statement, in a fiber of its own.
 */
const startRecorded = <C extends RunControl>(env: RunnerEnv, task: ClaimedTask, control: C, hooks: RunHooks<C>): void => {
  const fiber = Effect.runForkWith(env.context)(env.store.recordStart(env.workerId, task))
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit) && exit.value && control.stopReason === undefined) {
      return start(env, { ...task, startRecorded: true }, control, hooks)
    }
    // Not recorded (the database failed, or the task is no longer this claim's), or
    // stopped meanwhile: it does not run here; its lease expires, or its holder decides.
    hooks.onHandlerEnd(control)
    settleInBackground(env, task, (outcome) => hooks.onSettled(control, outcome),
      Exit.isSuccess(exit) && exit.value && control.stopReason === "shutdown"
        ? Effect.map(env.store.release(env.workerId, [task]), (ids) => (ids.includes(task.id) ? "released" : "abandoned") as Outcome)
        : Effect.as(
          Effect.logWarning("task not started: its start could not be recorded", {
            taskId: task.id,
            error: Exit.isFailure(exit) ? String(Cause.squash(exit.cause)) : "no longer held"
          }),
          (control.stopReason === "cancel" ? "cancelled" : "abandoned") as Outcome
        ))
  })
}

const spanNames = new WeakMap<AnyJob, string>()
const spanName = (job: AnyJob): string => {
  let name = spanNames.get(job)
  if (name === undefined) spanNames.set(job, name = `taskfiber.run ${job.name}`)
  return name
}
/** The run span's attributes, the same on a backend's span and on the stand-in. */
const runAttributes = (task: ClaimedTask) => ({
  "taskfiber.task_id": task.id,
  "taskfiber.attempt": task.attempt,
  "taskfiber.queue": task.queue
})

// A stack trace per task costs an Error object; the span's name says where.
const noStackTrace = { captureStackTrace: false } as const

/**
 * The handler's `ctx`. Its progress reporter is made on the first use of `progress`
 * or `saveCheckpoint`: most handlers never report, and a reporter with its
 * functions was a tenth of the runner's allocations per task.
 */
class RunContext implements JobContext {
  readonly taskId: string
  readonly attempt: number
  readonly maxAttempts: number
  readonly checkpoint: unknown
  readonly #env: RunnerEnv
  readonly #task: ClaimedTask
  readonly #spanName: string
  #span: Tracer.Span | undefined
  reporter: ProgressReporter.ProgressReporter | undefined = undefined
  constructor(env: RunnerEnv, task: ClaimedTask, spanName: string, span: Tracer.Span | undefined) {
    this.#env = env
    this.taskId = task.id
    this.attempt = task.attempt
    this.maxAttempts = task.maxAttempts
    this.checkpoint = task.checkpoint
    this.#task = task
    this.#spanName = spanName
    this.#span = span
  }
  /**
   * The run's span; with no tracing backend, made on first use by the native
   * tracer and exported nowhere, as every native span (attributes set on it
   * are kept, and read by nobody).
   */
  get span(): Tracer.Span {
    if (this.#span !== undefined) return this.#span
    const span = Tracer.nativeTracer.span({
      name: this.#spanName,
      parent: Option.none(),
      annotations: Context.empty(),
      links: [],
      startTime: 0n,
      kind: "internal",
      root: false,
      sampled: false
    })
    for (const [key, value] of Object.entries(runAttributes(this.#task))) span.attribute(key, value)
    return this.#span = span
  }
  #reporter(): ProgressReporter.ProgressReporter {
    return this.reporter ??= ProgressReporter.make({
      store: this.#env.store,
      workerId: this.#env.workerId,
      claim: this.#task,
      active: this.#env.reporters
    })
  }
  get progress() {
    return this.#reporter().progress
  }
  get saveCheckpoint() {
    return this.#reporter().saveCheckpoint
  }
}

const flushOf = (reporter: ProgressReporter.ProgressReporter | undefined) => reporter?.flush ?? Effect.void

// Plain code, no generator: this runs once per task, and a generator's frame and
// iterator cost more than the rest of the setup.
const runHandler = <C extends RunControl>(
  env: RunnerEnv,
  job: AnyJob,
  task: ClaimedTask,
  payload: unknown,
  control: C,
  hooks: RunHooks<C>
): void => {
  // Made with the handler's effect (within the span, when there is one).
  let ctx: RunContext | undefined
  const timeout = job.timeout ?? env.config.jobTimeout
  const name = spanName(job)
  // `run` is called in the handler's fiber: a handler that throws instead of
  // returning an effect fails its run (a defect), like any other failure.
  const annotated = (span: Tracer.Span | undefined) =>
    Effect.annotateLogs(
      Effect.suspend(() => job.run(payload, ctx = new RunContext(env, task, name, span))),
      { taskId: task.id, taskType: task.type, attempt: task.attempt }
    )
  // With a tracing backend: the span as Effect.withSpan makes it, without looking
  // it up again to hand it to the handler; its name is made once per job.
  const handler = env.tracing
    ? Effect.useSpan(name, { attributes: runAttributes(task) }, (span) =>
      Effect.withParentSpan(annotated(span), span, noStackTrace))
    : annotated(undefined)
  // A root fiber with the supervisor's services, started here and now (the
  // supervisor's shutdown stops and awaits every run through `control`). Forked
  // into a scope, each run cost a scheduled task, an async-hooks resource and a
  // scope entry: about a tenth of the runtime's CPU per task.
  const fiber = Effect.runForkWith(env.context)(handler)
  control.handler = fiber
  let timedOut = false
  // A handler that already ended (a synchronous one) needs no deadline.
  const deadline = fiber.pollUnsafe() !== undefined ? undefined : env.deadlines.set(Duration.toMillis(timeout), () => {
    timedOut = true
    fiber.interruptUnsafe()
  })
  // A stop requested before the handler existed takes effect now.
  if (control.stopReason !== undefined) fiber.interruptUnsafe()
  fiber.addObserver((handlerExit) => {
    if (deadline !== undefined) env.deadlines.clear(deadline)
    hooks.onHandlerEnd(control)
    const exit: Exit.Exit<unknown, unknown> =
      timedOut && control.stopReason === undefined && Exit.isFailure(handlerExit) && Cause.hasInterruptsOnly(handlerExit.cause)
        ? Exit.fail(new TaskTimeout({ taskId: task.id, timeoutMs: Duration.toMillis(timeout) }))
        : handlerExit
    const reporter = ctx?.reporter
    const done = (outcome: Outcome) => {
      if (reporter !== undefined) env.reporters.delete(reporter)
      hooks.onSettled(control, outcome)
    }
    if (Exit.isSuccess(exit)) {
      // Encoded here, by its own run: a result jsonb cannot store fails this task
      // alone, never the batch it would have joined.
      const result = StoredJson.encode(exit.value, "result")
      if (result instanceof UnstorableValue) {
        return settleInBackground(env, task, done, settle(env, job, task, Exit.fail(result) as Exit.Failure<unknown, unknown>, reporter, control))
      }
      if (!(reporter?.used ?? false)) {
        // The common case, without a fiber: straight into the next completion batch.
        env.completer.push(task, result, task.removeOnComplete, (error) => {
          if (error === undefined) return done("succeeded")
          settleInBackground(env, task, done, completionFailed(env, task, error))
        })
        return
      }
      return settleInBackground(env, task, done, settleSuccess(env, task, result, reporter))
    }
    settleInBackground(env, task, done, settle(env, job, task, exit, reporter, control))
  })
}

/**
 * A completion that did not commit. Not held any more: abandoned (its holder
 * decides). A failure of this task's value (the Completer split its batch down to
 * this task alone): failed permanently, saying why. Anything else (the database is
 * unreachable, the statement broken): abandoned, its lease expires.
 */
const completionFailed = (env: RunnerEnv, task: ClaimedTask, error: unknown): Effect.Effect<Outcome, DatabaseError> =>
  isItemFault(error) && error instanceof DatabaseError
    ? Effect.andThen(
      Effect.logWarning("the result could not be stored; the task fails", { error: error.message }),
      Effect.flatMap(
        env.store.fail(env.workerId, task, toLastError(new PermanentError({ message: `the result could not be stored: ${error.message}` }), "permanent")),
        movedTo(task, "failure")
      )
    )
    : abandoned(task)(error)

const settleSuccess = (
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

const settle = (
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
