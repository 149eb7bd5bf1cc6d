/**
 * One batch of Kafka messages into the database, in ONE transaction: the valid
 * messages' tasks enqueued (idempotent on the task id the message carries: a
 * redelivered message finds its task), the invalid ones' dead letters recorded
 * (idempotent on topic, partition, offset and timestamp), the cancel commands applied. The
 * caller commits the batch's offsets only after this returns, so:
 *
 * - a crash before the transaction commits: nothing was written, no offset
 *   committed; the batch is delivered again and written once;
 * - a crash after the commit, before the offsets: the batch is delivered again,
 *   and every message finds what it wrote (its task, its dead letter); a cancel
 *   applied twice cancels nothing the second time.
 *
 * Order within the batch is kept for the cancels: they run after the enqueues, so
 * an enqueue and a cancel of one task in one batch leave it cancelled.
 */
import { Clock, Effect, Tracer } from "effect"
import * as TraceContext from "../../domain/TraceContext.ts"
import { tracingIn } from "../../observability/Tracing.ts"
import type { EnqueueRequest } from "../../domain/Task.ts"
import { CancelBus } from "../../coordination/CancelBus.ts"
import { DeadLetters, type DeadLetterInput } from "../../store/DeadLetters.ts"
import { TaskStore } from "../../store/TaskStore.ts"
import { transaction } from "../../store/Transaction.ts"
import type { JobRegistry } from "../../runtime/JobRegistry.ts"
import * as MessageCodec from "./MessageCodec.ts"

/** What a batch came to. */
export interface IngestResult {
  /** Tasks this batch created (redelivered messages found theirs and are not counted). */
  readonly created: number
  /** Messages that named a task that existed already (a redelivery, or a producer's retry). */
  readonly existing: number
  /** Dead letters this batch recorded (a redelivered one is not counted). */
  readonly deadLettered: number
  /** Tasks cancelled by cancel commands. */
  readonly cancelled: number
  /** The messages that made no task, as written to the dead letters (a redelivered one too). */
  readonly letters: ReadonlyArray<DeadLetterInput>
}

/** The reason of a cancel by Kafka command. */
export const cancelReason = "cancelled by a Kafka command"

/** The batch's messages sorted into what to write (pure). */
export const plan = (registry: JobRegistry["Service"], messages: ReadonlyArray<MessageCodec.KafkaMessage>, limits: MessageCodec.Limits): Plan => {
  const requests: Array<EnqueueRequest.Encoded> = []
  const sources: Array<MessageCodec.KafkaMessage> = []
  const letters: Array<DeadLetterInput> = []
  const cancels: Array<string> = []
  for (const message of messages) {
    const decoded = MessageCodec.decode(registry, message, limits)
    switch (decoded._tag) {
      case "Enqueue":
        requests.push(decoded.request)
        sources.push(message)
        break
      case "Cancel":
        cancels.push(decoded.taskId)
        break
      case "Invalid":
        letters.push(letterOf(message, decoded.reason, decoded.taskId, decoded.type))
    }
  }
  return { requests, sources, letters, cancels }
}

/** What a batch writes: requests (each with the message it came from), dead letters, cancels. */
export interface Plan {
  readonly requests: ReadonlyArray<EnqueueRequest.Encoded>
  readonly sources: ReadonlyArray<MessageCodec.KafkaMessage>
  readonly letters: ReadonlyArray<DeadLetterInput>
  readonly cancels: ReadonlyArray<string>
}

const letterOf = (message: MessageCodec.KafkaMessage, reason: string, taskId?: string, type?: string): DeadLetterInput => ({
  source: "kafka",
  ...(taskId === undefined ? {} : { taskId }),
  ...(type === undefined ? {} : { type }),
  reason,
  error: { tag: "InvalidMessage", message: reason },
  raw: message.value,
  headers: MessageCodec.headerText(message.headers),
  topic: message.topic,
  partition: message.partition,
  offset: message.offset,
  timestamp: message.timestamp
})

/**
 * The plan with request `index` moved to the dead letters: the store refused it
 * (a check of its own the codec does not make), and one message must not hold up
 * its batch, nor be lost.
 */
const refuse = (p: Plan, index: number, reason: string): Plan => ({
  requests: p.requests.filter((_, i) => i !== index),
  sources: p.sources.filter((_, i) => i !== index),
  letters: [...p.letters, letterOf(p.sources[index]!, reason, p.requests[index]!.id, p.requests[index]!.type)],
  cancels: p.cancels
})

/** Writes one batch (see module doc); the running tasks it cancelled are told through the CancelBus after the commit. */
export const ingest = (registry: JobRegistry["Service"], messages: ReadonlyArray<MessageCodec.KafkaMessage>, limits: MessageCodec.Limits) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    const deadLetters = yield* DeadLetters
    const write = (p: Plan) =>
      transaction(Effect.gen(function*() {
        const enqueued = yield* store.enqueueMany(p.requests)
        const deadLettered = yield* deadLetters.record(p.letters)
        const cancelled = yield* store.cancel(p.cancels, cancelReason)
        return { enqueued, deadLettered, cancelled, letters: p.letters }
      }))
    const attempt = (p: Plan): ReturnType<typeof write> =>
      write(p).pipe(Effect.catchTag("InvalidEnqueueRequest", (e) => attempt(refuse(p, e.index, `the store refused the request at ${e.field || "its root"}: ${e.message}`))))
    const found = plan(registry, messages, limits)
    // With a tracing backend, each message that came with a trace gets its enqueue
    // span in it, from before the transaction to its end; the task keeps that span
    // as its trace parent, so its runs follow the ingress in the trace.
    const spans: Array<Tracer.Span> = []
    const planned: Plan = !tracingIn(yield* Effect.context<never>()) ? found : {
      ...found,
      requests: yield* Effect.forEach(found.requests, (r) => {
        const parent = TraceContext.parse(r.traceparent)
        if (parent === undefined) return Effect.succeed(r)
        return Effect.map(
          Effect.makeSpan("Tasks.enqueue", {
            parent: Tracer.externalSpan(parent),
            kind: "consumer",
            attributes: { "taskfiber.task_id": r.id, "taskfiber.type": r.type, "messaging.system": "kafka" }
          }),
          (span) => {
            spans.push(span)
            return { ...r, traceparent: TraceContext.format(span) }
          }
        )
      })
    }
    const writtenExit = yield* Effect.exit(attempt(planned))
    const now = yield* Clock.currentTimeNanos
    for (const span of spans) span.end(now, writtenExit)
    const written = yield* writtenExit
    const bus = yield* CancelBus
    for (const c of written.cancelled) if (c.previousStatus === "running") yield* bus.publish(c.id)
    const created = written.enqueued.filter((r) => r.created).length
    return {
      created,
      existing: written.enqueued.length - created,
      deadLettered: written.deadLettered,
      cancelled: written.cancelled.length,
      letters: written.letters
    } satisfies IngestResult
  }).pipe(Effect.withSpan("KafkaIngress.ingest", { attributes: { "taskfiber.messages": messages.length } }))
