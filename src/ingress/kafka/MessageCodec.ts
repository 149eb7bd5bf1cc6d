/**
 * What one Kafka message asks for: a task to enqueue, a task to cancel, or nothing
 * that can be done — then why, for its dead letter. Total: any bytes, any headers,
 * give one of the three, never a throw.
 *
 * A message's contract (headers are UTF-8 strings):
 *
 *   task-id      required: the task's id (a UUID), so a redelivered message finds its task
 *   task-type    required for an enqueue: the job's name
 *   priority     optional: an integer in [-1000, 1000]
 *   run-at       optional: when to run, an ISO 8601 timestamp with its zone
 *   dedupe-key   optional: a second key the task is known by
 *   traceparent  optional: W3C trace context, the parent of the task's spans
 *                (a malformed one is ignored, as W3C asks, and the task enqueued)
 *   command      optional: `cancel` cancels the task `task-id` instead
 *   value        the JSON payload, decoded by the job's Schema
 */
import { Cause, Exit } from "effect"
import { type EnqueueRequest, isUuid } from "../../domain/Task.ts"
import { PRIORITY_MAX, PRIORITY_MIN } from "../../domain/Priority.ts"
import * as TraceContext from "../../domain/TraceContext.ts"
import type { JobRegistry } from "../../runtime/JobRegistry.ts"
import { checkByName } from "../../runtime/Tasks.ts"

/** A message as the consumer hands it over (kafkajs's shape, narrowed). */
export interface KafkaMessage {
  readonly topic: string
  readonly partition: number
  readonly offset: string
  /** Milliseconds since the epoch, as text (kafkajs's). */
  readonly timestamp: string
  readonly value: Buffer | null
  readonly headers?: Readonly<Record<string, Buffer | string | ReadonlyArray<Buffer | string> | undefined>>
}

/** What a message asks for. */
export type Decoded =
  | { readonly _tag: "Enqueue"; readonly request: EnqueueRequest.Encoded }
  | { readonly _tag: "Cancel"; readonly taskId: string }
  | {
    readonly _tag: "Invalid"
    /** One line: what is wrong, naming the header or the payload's field. */
    readonly reason: string
    /** The headers' task id and type when they were readable (for the dead letter). */
    readonly taskId?: string
    readonly type?: string
  }

/** The headers as strings; a header given twice is kept as its list. */
export type HeaderText = Readonly<Record<string, string | ReadonlyArray<string>>>

/** The headers as text, for decoding and for a dead letter (binary values as UTF-8, replacement characters and all). */
export const headerText = (headers: KafkaMessage["headers"]): HeaderText => {
  const out: Record<string, string | ReadonlyArray<string>> = {}
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue
    out[name] = Array.isArray(value) ? value.map(String) : String(value)
  }
  return out
}

// An ISO 8601 date and time with a zone: a timestamp without one would be read in
// whatever zone the server runs in.
const isoWithZone = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i

/** The limits a message must stay within. */
export interface Limits {
  /** Bytes of the value; larger is refused before it is parsed. */
  readonly maxValueBytes: number
}

class Refused {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

/** One of our headers: absent, or exactly one value. */
const single = (headers: HeaderText, name: string): string | undefined => {
  const value = headers[name]
  if (value === undefined) return undefined
  if (typeof value !== "string") throw new Refused(`header "${name}" is given ${value.length} times`)
  return value
}

/** The headers' own part of a request, or why not (pure). */
export const readHeaders = (headers: HeaderText):
  | { readonly _tag: "Enqueue"; readonly taskId: string; readonly type: string; readonly options: Omit<EnqueueRequest.Encoded, "type" | "payload" | "queue"> }
  | { readonly _tag: "Cancel"; readonly taskId: string }
  | { readonly _tag: "Invalid"; readonly reason: string; readonly taskId?: string; readonly type?: string } => {
  let taskId: string | undefined
  let type: string | undefined
  try {
    const id = single(headers, "task-id")
    if (id === undefined) throw new Refused(`header "task-id" is missing (the task's id, a UUID)`)
    if (!isUuid(id.trim())) throw new Refused(`header "task-id" is not a UUID: ${JSON.stringify(id.slice(0, 100))}`)
    taskId = id.trim().toLowerCase()
    const command = single(headers, "command")
    if (command !== undefined) {
      if (command.trim().toLowerCase() === "cancel") return { _tag: "Cancel", taskId }
      throw new Refused(`header "command" is ${JSON.stringify(command.slice(0, 100))}; the only command is "cancel"`)
    }
    const typeHeader = single(headers, "task-type")
    if (typeHeader === undefined || typeHeader.trim() === "") throw new Refused(`header "task-type" is missing (the job's name)`)
    type = typeHeader.trim()
    const options: { -readonly [K in keyof Omit<EnqueueRequest.Encoded, "type" | "payload" | "queue">]?: EnqueueRequest.Encoded[K] } = { id: taskId }
    const priority = single(headers, "priority")
    if (priority !== undefined) {
      const n = Number(priority.trim())
      if (priority.trim() === "" || !Number.isInteger(n) || n < PRIORITY_MIN || n > PRIORITY_MAX) {
        throw new Refused(`header "priority" is not an integer in [${PRIORITY_MIN}, ${PRIORITY_MAX}]: ${JSON.stringify(priority.slice(0, 100))}`)
      }
      options.priority = n
    }
    const runAt = single(headers, "run-at")
    if (runAt !== undefined) {
      const at = new Date(runAt.trim())
      if (!isoWithZone.test(runAt.trim()) || Number.isNaN(at.getTime())) {
        throw new Refused(`header "run-at" is not an ISO 8601 timestamp with a zone: ${JSON.stringify(runAt.slice(0, 100))}`)
      }
      options.runAt = at.toISOString()
    }
    const dedupeKey = single(headers, "dedupe-key")
    if (dedupeKey !== undefined && dedupeKey !== "") options.dedupeKey = dedupeKey
    const trace = single(headers, "traceparent")
    if (TraceContext.parse(trace) !== undefined) options.traceparent = trace!.trim()
    return { _tag: "Enqueue", taskId, type, options }
  } catch (error) {
    if (!(error instanceof Refused)) throw error
    return { _tag: "Invalid", reason: error.reason, ...(taskId === undefined ? {} : { taskId }), ...(type === undefined ? {} : { type }) }
  }
}

/** The value as JSON, or why not. */
const readValue = (value: Buffer | null, limits: Limits): { readonly ok: true; readonly json: unknown } | { readonly ok: false; readonly reason: string } => {
  if (value === null) return { ok: false, reason: "the message has no value (a tombstone); the payload is its JSON value" }
  if (value.length > limits.maxValueBytes) {
    return { ok: false, reason: `the value is ${value.length} bytes, more than the limit of ${limits.maxValueBytes} (KAFKA_MAX_MESSAGE_BYTES)` }
  }
  try {
    return { ok: true, json: JSON.parse(value.toString("utf8")) }
  } catch (error) {
    return { ok: false, reason: `the value is not JSON (${error instanceof Error ? error.message : String(error)})` }
  }
}

/**
 * What `message` asks for, its payload checked against its job's schema by the
 * same path as every other enqueue (`Tasks.checkByName`).
 */
export const decode = (registry: JobRegistry["Service"], message: KafkaMessage, limits: Limits): Decoded => {
  const headers = readHeaders(headerText(message.headers))
  if (headers._tag !== "Enqueue") return headers
  const invalid = (reason: string): Decoded => ({ _tag: "Invalid", reason, taskId: headers.taskId, type: headers.type })
  const value = readValue(message.value, limits)
  if (!value.ok) return invalid(value.reason)
  const checked = checkByName(registry, headers.type, value.json, headers.options)
  if (Exit.isSuccess(checked)) return { _tag: "Enqueue", request: checked.value }
  const failure = Cause.findErrorOption(checked.cause)
  return invalid(failure._tag === "Some" ? failure.value.message : "the payload could not be checked")
}
