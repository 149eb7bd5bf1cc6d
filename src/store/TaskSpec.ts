/**
 * What a producer sends to enqueue a task, checked before it reaches SQL: a bad
 * spec fails with `InvalidTaskSpec` naming the field (and its index in a batch),
 * never with a database error the caller has to decode.
 */
import { Data, Schema } from "effect"
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

/** Validates one spec and turns it into the row the SQL reads. */
export const validateSpec = (spec: unknown, index: number, newId: () => string): SpecRow | InvalidTaskSpec => {
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
    ...(s.traceparent === undefined ? {} : { traceparent: s.traceparent })
  }
}
