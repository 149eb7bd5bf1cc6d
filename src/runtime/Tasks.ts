/**
 * Typed enqueue: from library code with a job value, or by job name with untrusted
 * JSON (CLI, HTTP). The payload is checked against the job's schema before anything
 * is written; a bad one fails with an error naming the field. A queue that is not
 * one of the job's (its `queue` and `otherQueues`) is refused (`QueueNotAllowed`):
 * no worker serves it for this job. Inside a caller's transaction
 * (`Transaction.transaction`), the task exists iff that commits.
 */
import { Cause, Effect, Exit, Option, Schema } from "effect"
import { PayloadInvalid, QueueNotAllowed, UnknownTaskType } from "../domain/Errors.ts"
import type { EnqueueRequest } from "../domain/Task.ts"
import { TaskStore, type EnqueueResult } from "../store/TaskStore.ts"
import type { Job } from "./Job.ts"
import type { JobRegistry } from "./JobRegistry.ts"

/**
 * The options of a typed enqueue: the {@link EnqueueRequest} less what the job
 * supplies (`type`, and `payload` from the job's schema). What they leave out comes
 * from the job — its `queue`, `priority`, attempt limit and `removeOnComplete` —
 * and what the job leaves out from the request's defaults, the attempt limit from
 * the store's (`RETRY_MAX_ATTEMPTS`).
 */
export type EnqueueOptions = Omit<EnqueueRequest.Encoded, "type" | "payload">

const request = (job: Job<string, any>, payload: unknown, queue: string, o: EnqueueOptions): EnqueueRequest.Encoded => {
  // Absent: the store applies its own (RETRY_MAX_ATTEMPTS).
  const maxAttempts = o.maxAttempts ?? job.maxAttempts
  return {
    type: job.name,
    queue,
    payload,
    priority: o.priority ?? job.priority,
    ...(maxAttempts === undefined ? {} : { maxAttempts }),
    ...(o.id === undefined ? {} : { id: o.id }),
    ...(o.delayMs === undefined ? {} : { delayMs: o.delayMs }),
    ...(o.runAt === undefined ? {} : { runAt: o.runAt }),
    ...(o.dedupeKey === undefined ? {} : { dedupeKey: o.dedupeKey }),
    ...(o.traceparent === undefined ? {} : { traceparent: o.traceparent }),
    ...((o.removeOnComplete ?? job.removeOnComplete) ? { removeOnComplete: true } : {})
  }
}

/** A queue that is not one of the job's, refused. */
const queueRefused = (job: Job<string, any>, o: EnqueueOptions): QueueNotAllowed | undefined =>
  o.queue === undefined || job.queues.includes(o.queue) ? undefined : new QueueNotAllowed({ taskType: job.name, queue: o.queue, allowed: job.queues })

/** The queue of the task: the job's, or one of its other queues. */
const queueOf = (job: Job<string, any>, o: EnqueueOptions) => {
  const refused = queueRefused(job, o)
  return refused === undefined ? Effect.succeed(o.queue ?? job.queue) : Effect.fail(refused)
}

/** A payload's decoder and encoder of one job, made once (a parser per call was a third of the Kafka ingress's CPU). */
const codecs = new WeakMap<Job<string, any>, { readonly decode: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>; readonly encode: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError> }>()
const codecOf = (job: Job<string, any>) => {
  let codec = codecs.get(job)
  if (codec === undefined) {
    codec = { decode: Schema.decodeUnknownExit(job.payload as Schema.Codec<unknown, unknown>), encode: Schema.encodeUnknownExit(job.payload as Schema.Codec<unknown, unknown>) }
    codecs.set(job, codec)
  }
  return codec
}

/** A schema's failure as the payload error naming its field. */
const payloadError = (job: Job<string, any>, cause: Cause.Cause<Schema.SchemaError>) => {
  const error = Cause.findErrorOption(cause)
  return Option.isSome(error)
    ? PayloadInvalid.fromSchemaError(job.name, error.value)
    : new PayloadInvalid({ taskType: job.name, path: "", message: "the payload could not be checked" })
}

/** A typed payload encoded by its job's schema (the encoder made once per job). */
const encodePayload = (job: Job<string, any>, payload: unknown): Effect.Effect<unknown, PayloadInvalid> =>
  Effect.suspend(() => {
    const encoded = codecOf(job).encode(payload)
    return Exit.isSuccess(encoded) ? Effect.succeed(encoded.value) : Effect.fail(payloadError(job, encoded.cause))
  })

/** Enqueues a task of `job` with a typed payload. */
export const enqueue = <P>(job: Job<string, P>, payload: P, options: EnqueueOptions = {}) =>
  Effect.gen(function*() {
    const queue = yield* queueOf(job, options)
    const encoded = yield* encodePayload(job, payload)
    const store = yield* TaskStore
    return yield* store.enqueue(request(job, encoded, queue, options))
  }).pipe(Effect.withSpan("Tasks.enqueue", { attributes: { "taskfiber.type": job.name } }))

/**
 * Enqueues many tasks of `job` in one statement (one transaction), each payload
 * typed; `options` apply to every task. Results are in the payloads' order; a bad
 * payload fails the whole call before anything is written.
 */
export const enqueueMany = <P>(job: Job<string, P>, payloads: Iterable<P>, options: Omit<EnqueueOptions, "id" | "dedupeKey"> = {}) =>
  Effect.gen(function*() {
    const queue = yield* queueOf(job, options)
    const requests: Array<EnqueueRequest.Encoded> = []
    for (const payload of payloads) requests.push(request(job, yield* encodePayload(job, payload), queue, options))
    const store = yield* TaskStore
    return yield* store.enqueueMany(requests)
  }).pipe(Effect.withSpan("Tasks.enqueueMany", { attributes: { "taskfiber.type": job.name } }))

/**
 * The checked request for a task of type `type` with an untrusted payload (decoded
 * by the job's schema), written by nobody yet — synchronously, with no fiber: what
 * {@link enqueueByName} writes, and what a caller batching requests of several
 * types into one statement (the Kafka ingress, per message) hands to
 * `TaskStore.enqueueMany`.
 */
export const checkByName = (
  registry: JobRegistry["Service"],
  type: string,
  payload: unknown,
  options: EnqueueOptions = {}
): Exit.Exit<EnqueueRequest.Encoded, UnknownTaskType | QueueNotAllowed | PayloadInvalid> => {
  const job = registry.get(type)
  if (job === undefined) return Exit.fail(new UnknownTaskType({ taskType: type }))
  const refused = queueRefused(job, options)
  if (refused !== undefined) return Exit.fail(refused)
  const codec = codecOf(job)
  const decoded = codec.decode(payload)
  if (Exit.isFailure(decoded)) return Exit.fail(payloadError(job, decoded.cause))
  const encoded = codec.encode(decoded.value)
  if (Exit.isFailure(encoded)) return Exit.fail(payloadError(job, encoded.cause))
  return Exit.succeed(request(job, encoded.value, options.queue ?? job.queue, options))
}


/** {@link checkByName} as an effect. */
export const requestByName = (
  registry: JobRegistry["Service"],
  type: string,
  payload: unknown,
  options: EnqueueOptions = {}
): Effect.Effect<EnqueueRequest.Encoded, UnknownTaskType | QueueNotAllowed | PayloadInvalid> =>
  Effect.suspend(() => checkByName(registry, type, payload, options))

/** Enqueues by job name with an untrusted payload (decoded by the job's schema). */
export const enqueueByName = (
  registry: JobRegistry["Service"],
  type: string,
  payload: unknown,
  options: EnqueueOptions = {}
) =>
  Effect.gen(function*() {
    const checked = yield* requestByName(registry, type, payload, options)
    const store = yield* TaskStore
    return (yield* store.enqueue(checked)) as EnqueueResult
  }).pipe(Effect.withSpan("Tasks.enqueueByName", { attributes: { "taskfiber.type": type } }))
