/**
 * Enqueue requests on their way into the store (`EnqueueRequest` in
 * src/domain/Task.ts), checked and turned into the rows the SQL reads: a bad
 * request fails with `InvalidEnqueueRequest` naming the field (and its index in a
 * batch), never with a database error the caller has to decode.
 */
import { Data, Schema } from "effect"
import { PRIORITY_MAX, PRIORITY_MIN } from "../domain/Priority.ts"
import * as StoredJson from "../domain/StoredJson.ts"
import { EnqueueRequest } from "../domain/Task.ts"

/** An enqueue request failed validation. */
export class InvalidEnqueueRequest extends Data.TaggedError("InvalidEnqueueRequest")<{
  /** Position in the batch. */
  readonly index: number
  /** The offending field, e.g. `priority`; empty when the request is not an object. */
  readonly field: string
  readonly message: string
}> {}

/** What the store fills in where a request leaves it out. */
interface Defaults {
  readonly newId: () => string
  /** The attempt limit of a request that names none (`RETRY_MAX_ATTEMPTS`). */
  readonly maxAttempts: number
}

/**
 * One request as the JSON the `taskfiber.enqueue` function reads. It always names
 * `max_attempts`: the limit is the store's to decide (its configured default), not
 * the column's default in SQL.
 */
interface Row {
  readonly id: string
  readonly queue: string
  readonly type: string
  readonly payload: unknown
  readonly priority: number
  readonly max_attempts: number
  readonly run_at?: string
  readonly delay_ms?: number
  readonly dedupe_key?: string
  readonly traceparent?: string
  readonly remove_on_complete?: boolean
}

const decode = Schema.decodeUnknownExit(EnqueueRequest)

const firstPath = (issue: unknown): string => {
  // Walk the issue tree to the first Pointer: its path names the field.
  const seen = new Set<unknown>()
  const visit = (node: unknown): string | undefined => {
    if (typeof node !== "object" || node === null || seen.has(node)) return undefined
    seen.add(node)
    const n = node as { _tag?: string; path?: ReadonlyArray<PropertyKey>; issue?: unknown; issues?: ReadonlyArray<unknown> }
    if (n._tag === "Pointer" && Array.isArray(n.path) && n.path.length > 0) return n.path.map(String).join(".")
    if (n.issue !== undefined) {
      const found = visit(n.issue)
      if (found !== undefined) return found
    }
    for (const child of n.issues ?? []) {
      const found = visit(child)
      if (found !== undefined) return found
    }
    return undefined
  }
  return visit(issue) ?? ""
}

const isLength = (v: unknown, min: number, max: number): v is string =>
  typeof v === "string" && v.length >= min && v.length <= max

/**
 * The common request — `type`, and maybe `queue`, `payload`, `priority`,
 * `removeOnComplete` — checked by hand: the Schema decoder costs about 10 µs a request, a third of a bulk enqueue.
 * It accepts only what `EnqueueRequest` accepts (a subset: anything else, valid or
 * not, goes to the decoder, which also words the errors); a property test checks
 * that both agree.
 */
export const fastRow = (request: unknown, defaults: Defaults): Row | undefined => {
  if (typeof request !== "object" || request === null || Array.isArray(request)) return undefined
  const s = request as Record<string, unknown>
  for (const key in s) {
    if (key !== "type" && key !== "queue" && key !== "payload" && key !== "priority" && key !== "removeOnComplete") {
      return undefined
    }
  }
  const { type, queue, payload, priority, removeOnComplete } = s
  if (!isLength(type, 1, 255)) return undefined
  if (queue !== undefined && !isLength(queue, 1, 128)) return undefined
  if (priority !== undefined && !(Number.isInteger(priority) && (priority as number) >= PRIORITY_MIN && (priority as number) <= PRIORITY_MAX)) return undefined
  if (removeOnComplete !== undefined && typeof removeOnComplete !== "boolean") return undefined
  const row: Row = {
    id: defaults.newId(),
    queue: queue ?? "default",
    type,
    payload: payload === undefined ? {} : payload,
    priority: (priority as number | undefined) ?? 0,
    max_attempts: defaults.maxAttempts
  }
  return removeOnComplete === true ? { ...row, remove_on_complete: true } : row
}

/** Validates one request and turns it into the row the SQL reads. */
export const toRow = (request: unknown, index: number, defaults: Defaults): Row | InvalidEnqueueRequest => {
  const fast = fastRow(request, defaults)
  if (fast !== undefined) return fast
  const exit = decode(request)
  if (exit._tag === "Failure") {
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    const schemaError = error?._tag === "Fail" ? (error.error as { issue?: unknown; message?: string }) : undefined
    const field = firstPath(schemaError?.issue)
    return new InvalidEnqueueRequest({
      index,
      field,
      message: `invalid enqueue request${index > 0 ? ` #${index}` : ""}${field ? ` at "${field}"` : ""}: ${schemaError?.message ?? "not an enqueue request"}`
    })
  }
  const decoded = exit.value
  return {
    id: decoded.id ?? defaults.newId(),
    queue: decoded.queue,
    type: decoded.type,
    payload: decoded.payload,
    priority: decoded.priority,
    max_attempts: decoded.maxAttempts ?? defaults.maxAttempts,
    ...(decoded.runAt === undefined ? {} : { run_at: decoded.runAt.toISOString() }),
    ...(decoded.delayMs === undefined ? {} : { delay_ms: decoded.delayMs }),
    ...(decoded.dedupeKey === undefined ? {} : { dedupe_key: decoded.dedupeKey }),
    ...(decoded.traceparent === undefined ? {} : { traceparent: decoded.traceparent }),
    ...(decoded.removeOnComplete === true ? { remove_on_complete: true } : {})
  }
}

/** The rows of a batch of requests, in order, or the first request that is invalid. */
export const toRows = (requests: ReadonlyArray<unknown>, defaults: Defaults): ReadonlyArray<Row> | InvalidEnqueueRequest => {
  const rows: Array<Row> = []
  for (let index = 0; index < requests.length; index++) {
    const row = toRow(requests[index], index, defaults)
    if (row instanceof InvalidEnqueueRequest) return row
    rows.push(row)
  }
  return rows
}

/**
 * The JSON text of a batch's rows, or the first request jsonb could not store (a
 * payload with a BigInt, a cycle, U+0000 …), as an `InvalidEnqueueRequest` naming
 * it. One encoding of the whole batch; only a batch that fails it is looked at
 * request by request.
 */
export const encodeRows = (rows: ReadonlyArray<Row>): string | InvalidEnqueueRequest => {
  const all = StoredJson.encode(rows, "payload")
  if (all instanceof StoredJson.EncodedJson) return all.text
  for (const [index, row] of rows.entries()) {
    const payload = StoredJson.encode(row.payload, "payload")
    const bad = payload instanceof StoredJson.EncodedJson ? StoredJson.encode(row, "payload") : payload
    if (!(bad instanceof StoredJson.EncodedJson)) {
      const field = payload instanceof StoredJson.EncodedJson ? "" : "payload"
      return new InvalidEnqueueRequest({
        index,
        field,
        message: `invalid enqueue request${index > 0 ? ` #${index}` : ""}${field ? ` at "${field}"` : ""}: ${bad.reason}`
      })
    }
  }
  return new InvalidEnqueueRequest({ index: 0, field: "", message: `invalid enqueue request: ${all.reason}` })
}
