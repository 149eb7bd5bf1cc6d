/**
 * The handler's `ctx` (JobContext) and the run's span.
 */
import { Context, Option, Tracer } from "effect"
import type { ClaimedTask } from "../domain/Task.ts"
import type { AnyJob } from "./Job.ts"
import type { JobContext } from "./JobContext.ts"
import * as ProgressReporter from "./ProgressReporter.ts"
import type { RunnerEnv } from "./TaskRunner.ts"

const spanNames = new WeakMap<AnyJob, string>()
/** The run span's name for `job`, made once per job. */
export const spanName = (job: AnyJob): string => {
  let name = spanNames.get(job)
  if (name === undefined) spanNames.set(job, name = `taskfiber.run ${job.name}`)
  return name
}
/** The run span's attributes, the same on a backend's span and on the stand-in. */
export const runAttributes = (task: ClaimedTask) => ({
  "taskfiber.task_id": task.id,
  "taskfiber.type": task.type,
  "taskfiber.attempt": task.attempt,
  "taskfiber.priority": task.priority,
  "taskfiber.queue": task.queue
})

// A stack trace per task costs an Error object; the span's name says where.
export const noStackTrace = { captureStackTrace: false } as const

/**
 * The handler's `ctx`. Its progress reporter is made on the first use of `progress`
 * or `saveCheckpoint`: most handlers never report, and a reporter with its
 * functions was a tenth of the runner's allocations per task.
 */
export class RunContext implements JobContext {
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
      active: this.#env.reporters,
      saved: this.#env.events.observed("Progress")
        ? (progress) => this.#env.events.emit({ _tag: "Progress", workerId: this.#env.workerId, taskId: this.taskId, progress: progress as never })
        : undefined
    })
  }
  get progress() {
    return this.#reporter().progress
  }
  get saveCheckpoint() {
    return this.#reporter().saveCheckpoint
  }
}

