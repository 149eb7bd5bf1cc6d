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
 *   interrupted, lease expired → nothing: the task belongs to another claim now
 *
 * The statements and their failures are Settlement's; the handler's `ctx` is
 * RunContext's.
 *
 * Crash between the handler's end and the settling statement: the lease expires,
 * the reaper makes the task retrying, it runs again (at-least-once; the handler
 * sees `attempt` and its last checkpoint).
 *
 * One fiber per task: the handler's. Its end is observed by a callback, and the
 * common outcome — success with no progress to write — goes straight to the
 * Completer; only the rare ones (failures, stops, pending progress) start a fiber
 * of their own to write. The handler's timeout (a deadline on the supervisor's one
 * timer, see Deadlines) interrupts it. This keeps the runtime's own cost per task
 * to a few microseconds, so a worker can run tens of thousands of short tasks a
 * second.
 */
import type { RuntimeEvents } from "../observability/RuntimeEvents.ts"
import { Cause, Clock, Context, Duration, Effect, Exit, type Fiber, Schema, Tracer } from "effect"
import { toLastError } from "../domain/Classification.ts"
import { PayloadInvalid, TaskTimeout, UnknownTaskType, UnstorableValue } from "../domain/Errors.ts"
import * as StoredJson from "../domain/StoredJson.ts"
import type { ClaimedTask } from "../domain/Task.ts"
import type { Outcome } from "../domain/Outcome.ts"
import type { StopReason } from "../observability/RuntimeEvents.ts"
import type { TaskStore } from "../store/TaskStore.ts"
import type { Completer } from "./Completer.ts"
import type { Deadlines } from "./Deadlines.ts"
import type { AnyJob } from "./Job.ts"
import type { JobRegistry } from "./JobRegistry.ts"
import type * as ProgressReporter from "./ProgressReporter.ts"
import * as TraceContext from "../domain/TraceContext.ts"
import { noStackTrace, RunContext, runAttributes, spanName } from "./RunContext.ts"
import type { RuntimeConfig } from "./RuntimeConfig.ts"
import { completionFailed, movedTo, settle, settleInBackground, settleSuccess } from "./Settlement.ts"

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

/** What the runner needs from its supervisor. */
export interface RunnerEnv {
  readonly store: TaskStore["Service"]
  readonly registry: JobRegistry["Service"]
  readonly config: RuntimeConfig
  readonly workerId: string
  /** Batched success (see Completer). */
  readonly completer: Completer
  /** Reporters of the running tasks that reported, flushed by the progress flusher. */
  readonly reporters: Set<ProgressReporter.ProgressReporter>
  /** The supervisor's services (logger, tracer, levels): handler fibers and settling fibers run with them. */
  readonly context: Context.Context<never>
  /** The handlers' timeouts. */
  readonly deadlines: Deadlines
  /** The runtime's event hub (a run's progress is told there). */
  readonly events: RuntimeEvents["Service"]
  /** A tracing backend is installed in `context` (observability/Tracing.ts `tracingIn`): each run gets a span. */
  readonly tracing: boolean
}


/**
 * What the supervisor hears of a run, told which run: one hooks object serves every
 * run (a pair of closures per task was an allocation the runtime can do without).
 */
export interface RunHooks<C extends RunControl = RunControl> {
  /** The handler's fiber is about to start (its payload decoded, its start recorded). */
  readonly onHandlerStart: (control: C) => void
  /** The handler has ended (its slot is free); the outcome is not written yet. */
  readonly onHandlerEnd: (control: C) => void
  /** The outcome is written (or could not be: "abandoned"). Called exactly once. */
  readonly onSettled: (control: C, outcome: Outcome) => void
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
 * crashes its worker at once uses up its attempts. Rare: one
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

/**
 * The run span's parent: the trace the task was enqueued in (a Kafka message's
 * `traceparent`), else the span current where the run starts (none).
 */
export const parentOf = (task: ClaimedTask): Tracer.ExternalSpan | undefined => {
  const parent = TraceContext.parse(task.traceparent)
  return parent === undefined ? undefined : Tracer.externalSpan(parent)
}

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
  // With a tracing backend: the run's span, from the handler's start to its outcome
  // written (the outcome is one of its attributes), the parent of the handler's own
  // spans; its name is made once per job. Without one, nothing is made per run.
  let span: Tracer.Span | undefined
  const handler = env.tracing
    ? Effect.flatMap(Effect.makeSpan(name, { attributes: runAttributes(task), parent: parentOf(task), kind: "consumer" }), (made) => {
      span = made
      return Effect.withParentSpan(annotated(made), made, noStackTrace)
    })
    : annotated(undefined)
  // A root fiber with the supervisor's services, started here and now (the
  // supervisor's shutdown stops and awaits every run through `control`). Forked
  // into a scope, each run cost a scheduled task, an async-hooks resource and a
  // scope entry: about a tenth of the runtime's CPU per task.
  hooks.onHandlerStart(control)
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
      if (span !== undefined) {
        span.attribute("taskfiber.outcome", outcome)
        span.end(Context.get(env.context, Clock.Clock).currentTimeNanosUnsafe(), exit)
      }
      hooks.onSettled(control, outcome)
    }
    // With a span, the outcome's writes name it: the status event they relay is its child.
    const claim: ClaimedTask = span === undefined ? task : { ...task, runTraceparent: TraceContext.format(span) }
    if (Exit.isSuccess(exit)) {
      // Encoded here, by its own run: a result jsonb cannot store fails this task
      // alone, never the batch it would have joined.
      const result = StoredJson.encode(exit.value, "result")
      if (result instanceof UnstorableValue) {
        return settleInBackground(env, claim, done, settle(env, job, claim, Exit.fail(result) as Exit.Failure<unknown, unknown>, reporter, control))
      }
      if (!(reporter?.used ?? false)) {
        // The common case, without a fiber: straight into the next completion batch.
        env.completer.push(claim, result, task.removeOnComplete, (error) => {
          if (error === undefined) return done("succeeded")
          settleInBackground(env, claim, done, completionFailed(env, claim, error))
        })
        return
      }
      return settleInBackground(env, claim, done, settleSuccess(env, claim, result, reporter))
    }
    settleInBackground(env, claim, done, settle(env, job, claim, exit, reporter, control))
  })
}

