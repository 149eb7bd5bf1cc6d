/**
 * What a producer sends to enqueue a task, checked before it reaches SQL: a bad
 * spec fails with `InvalidTaskSpec` naming the field (and its index in a batch),
 * never with a database error the caller has to decode.
 */
import { Data, Schema } from "effect"
import { PRIORITY_MAX, PRIORITY_MIN } from "../domain/Priority.ts"
import * as StoredJson from "../domain/StoredJson.ts"
import { EnqueueSpec, type EnqueueInput } from "../domain/Task.ts"

/** An enqueue request (see `EnqueueSpec` in src/domain/Task.ts). */
export type TaskSpec = EnqueueInput

/** A spec failed validation. */
export class InvalidTaskSpec extends Data.TaggedError("InvalidTaskSpec")<{
  /** Position in the batch. */
  readonly index: number
  /** The offending field, e.g. `priority`; empty when the spec is not an object. */
  readonly field: string
  readonly message: string
}> {}

/** The JSON the `taskfiber.enqueue` function reads. */
export interface SpecRow {
  readonly id: string
  readonly queue: string
  readonly type: string
  readonly payload: unknown
  readonly priority: number
  readonly max_attempts?: number
  readonly run_at?: string
  readonly delay_ms?: number
  readonly dedupe_key?: string
  readonly traceparent?: string
  readonly remove_on_complete?: boolean
}

const decode = Schema.decodeUnknownExit(EnqueueSpec)

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
 * The common spec — `type`, and maybe `queue`, `payload`, `priority`,
 * `removeOnComplete` — checked by hand: the Schema decoder costs about 10 µs a spec, a third of a bulk enqueue.
 * It accepts only what `EnqueueSpec` accepts (a subset: anything else, valid or
 * not, goes to the decoder, which also words the errors); a property test checks
 * that both agree.
 */
export const fastSpec = (spec: unknown, newId: () => string): SpecRow | undefined => {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) return undefined
  const s = spec as Record<string, unknown>
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
  const row: SpecRow = {
    id: newId(),
    queue: queue ?? "default",
    type,
    payload: payload === undefined ? {} : payload,
    priority: (priority as number | undefined) ?? 0
  }
  return removeOnComplete === true ? { ...row, remove_on_complete: true } : row
}

/** Validates one spec and turns it into the row the SQL reads. */
export const validateSpec = (spec: unknown, index: number, newId: () => string): SpecRow | InvalidTaskSpec => {
  const fast = fastSpec(spec, newId)
  if (fast !== undefined) return fast
  const exit = decode(spec)
  if (exit._tag === "Failure") {
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    const schemaError = error?._tag === "Fail" ? (error.error as { issue?: unknown; message?: string }) : undefined
    const field = firstPath(schemaError?.issue)
    return new InvalidTaskSpec({
      index,
      field,
      message: `invalid task spec${index > 0 ? ` #${index}` : ""}${field ? ` at "${field}"` : ""}: ${schemaError?.message ?? "not a task spec"}`
    })
  }
  const s = exit.value
  return {
    id: s.id ?? newId(),
    queue: s.queue,
    type: s.type,
    payload: s.payload,
    priority: s.priority,
    ...(s.maxAttempts === undefined ? {} : { max_attempts: s.maxAttempts }),
    ...(s.runAt === undefined ? {} : { run_at: s.runAt.toISOString() }),
    ...(s.delayMs === undefined ? {} : { delay_ms: s.delayMs }),
    ...(s.dedupeKey === undefined ? {} : { dedupe_key: s.dedupeKey }),
    ...(s.traceparent === undefined ? {} : { traceparent: s.traceparent }),
    ...(s.removeOnComplete === true ? { remove_on_complete: true } : {})
  }
}

/**
 * The JSON text of a batch's rows, or the first spec jsonb could not store (a
 * payload with a BigInt, a cycle, U+0000 …), as an `InvalidTaskSpec` naming it.
 * One encoding of the whole batch, as before; only a batch that fails it is looked
 * at spec by spec.
 */
export const encodeRows = (rows: ReadonlyArray<SpecRow>): string | InvalidTaskSpec => {
  const all = StoredJson.encode(rows, "payload")
  if (all instanceof StoredJson.EncodedJson) return all.text
  for (const [index, row] of rows.entries()) {
    const payload = StoredJson.encode(row.payload, "payload")
    const bad = payload instanceof StoredJson.EncodedJson ? StoredJson.encode(row, "payload") : payload
    if (!(bad instanceof StoredJson.EncodedJson)) {
      const field = payload instanceof StoredJson.EncodedJson ? "" : "payload"
      return new InvalidTaskSpec({
        index,
        field,
        message: `invalid task spec${index > 0 ? ` #${index}` : ""}${field ? ` at "${field}"` : ""}: ${bad.reason}`
      })
    }
  }
  return new InvalidTaskSpec({ index: 0, field: "", message: `invalid task spec: ${all.reason}` })
}
