/**
 * The errors a task run can end with. Each one has a fixed classification
 * (see `Classification.ts`), which decides between retry and failure.
 *
 * @since 0.1.0
 */
import { Data, type Schema, SchemaIssue } from "effect"

/**
 * A run exceeded its time limit. Classified `timeout` (retried).
 *
 * @since 0.1.0
 */
export class TaskTimeout extends Data.TaggedError("TaskTimeout")<{
  readonly taskId: string
  readonly timeoutMs: number
}> {
  override get message(): string {
    return `task ${this.taskId} exceeded its ${this.timeoutMs} ms time limit`
  }
}

/**
 * A run was stopped because its task was cancelled. Classified `cancelled`
 * (never retried).
 *
 * @since 0.1.0
 */
export class TaskCancelled extends Data.TaggedError("TaskCancelled")<{
  readonly taskId: string
}> {
  override get message(): string {
    return `task ${this.taskId} was cancelled`
  }
}

/**
 * A run's lease expired before it settled: the reaper took the task back (the
 * `last_error` it records has this tag). Classified `transient`: the task runs
 * again, on any worker.
 *
 * @since 0.1.0
 */
export class LeaseExpired extends Data.TaggedError("LeaseExpired")<{
  readonly taskId: string
  readonly workerId: string
}> {
  override get message(): string {
    return `the lease of worker ${this.workerId} on task ${this.taskId} expired`
  }
}

/**
 * A payload does not match its task type's schema. Classified `permanent`:
 * the same payload will fail the same way on every attempt.
 *
 * The constructor takes the schema's own `message` and builds a message that
 * names the task type and the offending field; the schema's text is kept in
 * `issue`.
 *
 * @since 0.1.0
 */
export class PayloadInvalid extends Data.TaggedError("PayloadInvalid")<{
  readonly taskType: string
  readonly path: string
  readonly issue: string
  readonly message: string
}> {
  constructor(args: { readonly taskType: string; readonly path: string; readonly message: string }) {
    const at = args.path === "" ? "" : ` at ${args.path}`
    super({
      taskType: args.taskType,
      path: args.path,
      issue: args.message,
      message: `invalid payload for task type "${args.taskType}"${at}: ${args.message}`
    })
  }

  /**
   * Builds a `PayloadInvalid` from the first issue of a schema decoding error,
   * with the path written as dotted keys (`items.0.sku`, empty for the root).
   *
   * @since 0.1.0
   */
  static fromSchemaError(taskType: string, error: Schema.SchemaError): PayloadInvalid {
    const first = SchemaIssue.makeFormatterStandardSchemaV1()(error.issue).issues[0]
    const path = (first?.path ?? [])
      .map((segment) => String(typeof segment === "object" ? segment.key : segment))
      .join(".")
    return new PayloadInvalid({ taskType, path, message: first?.message ?? error.message })
  }
}

/**
 * Raised by a handler to say that retrying cannot help. Classified `permanent`.
 *
 * @since 0.1.0
 */
export class PermanentError extends Data.TaggedError("PermanentError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Raised by a handler to ask for a retry explicitly. Classified `transient`.
 *
 * @since 0.1.0
 */
export class TransientError extends Data.TaggedError("TransientError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * No handler is registered for the task's type. Classified `permanent`:
 * deploying a handler and replaying the dead letter is the way out.
 *
 * @since 0.1.0
 */
export class UnknownTaskType extends Data.TaggedError("UnknownTaskType")<{
  readonly taskType: string
}> {
  override get message(): string {
    return `no handler is registered for task type "${this.taskType}"`
  }
}

/**
 * A value a run produced (its result, progress or checkpoint), or a payload, that PostgreSQL's
 * jsonb cannot store: a BigInt, a cycle, a `toJSON` that throws, U+0000 or an
 * unpaired surrogate in a string. Classified `permanent`: the same code produces the
 * same value. Only the run that produced it fails; see `StoredJson`.
 *
 * @since 0.1.0
 */
export class UnstorableValue extends Data.TaggedError("UnstorableValue")<{
  readonly what: "payload" | "result" | "progress" | "checkpoint"
  readonly reason: string
}> {
  override get message(): string {
    return `the task's ${this.what} cannot be stored as JSON: ${this.reason}`
  }
}

/**
 * An enqueue named a queue that is not one of its job's (`Job.define`'s `queue` and
 * `otherQueues`): workers serve a job's own queues only, so the task would wait
 * there for ever. Refused before anything is written.
 *
 * @since 0.1.0
 */
export class QueueNotAllowed extends Data.TaggedError("QueueNotAllowed")<{
  readonly taskType: string
  readonly queue: string
  readonly allowed: ReadonlyArray<string>
}> {
  override get message(): string {
    return `task type "${this.taskType}" runs in queue ${this.allowed.map((q) => `"${q}"`).join(", ")}, not "${this.queue}" ` +
      `(a job's otherQueues lets its tasks into more queues; workers with the job serve them all)`
  }
}

/**
 * Any of the errors a run can end with.
 *
 * @since 0.1.0
 */
export type TaskError =
  | TaskTimeout
  | TaskCancelled
  | LeaseExpired
  | PayloadInvalid
  | PermanentError
  | TransientError
  | UnknownTaskType
  | UnstorableValue
