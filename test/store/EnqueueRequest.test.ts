import { describe, expect, it } from "@effect/vitest"
import { Exit, Schema } from "effect"
import { EnqueueRequest } from "../../src/domain/Task.ts"
import { fastRow, InvalidEnqueueRequest, toRow } from "../../src/store/EnqueueRequest.ts"

const id = "00000000-0000-7000-8000-000000000000"
const defaults = { newId: () => id, maxAttempts: 7 }

// Request-like values: the common keys with values of the right and of wrong
// shapes, sometimes one key more.
const Anything = Schema.Union([Schema.String, Schema.Number, Schema.Boolean, Schema.Null, Schema.Json])
const RequestLike = Schema.Struct({
  type: Schema.optional(Schema.Union([Schema.String, Schema.Number, Schema.Null])),
  queue: Schema.optional(Schema.Union([Schema.String, Schema.Number])),
  payload: Schema.optional(Schema.Json),
  priority: Schema.optional(Schema.Union([Schema.Int, Schema.Number, Schema.String])),
  delayMs: Schema.optional(Anything),
  removeOnComplete: Schema.optional(Schema.Union([Schema.Boolean, Schema.String, Schema.Null]))
})

describe("enqueue requests", () => {
  it.prop("the hand-written check accepts only what the EnqueueRequest schema accepts, with the same values", { request: RequestLike }, ({ request }) => {
    const fast = fastRow(request, defaults)
    if (fast === undefined) return
    const decoded = Schema.decodeUnknownExit(EnqueueRequest)(request)
    expect(Exit.isSuccess(decoded)).toBe(true)
    if (Exit.isSuccess(decoded)) {
      const d = decoded.value
      expect(fast).toEqual({
        id,
        queue: d.queue,
        type: d.type,
        payload: d.payload,
        priority: d.priority,
        max_attempts: defaults.maxAttempts,
        ...(d.removeOnComplete === true ? { remove_on_complete: true } : {})
      })
    }
  })

  it("takes the common request by hand and leaves everything else to the schema", () => {
    expect(fastRow({ type: "t", payload: { a: 1 } }, defaults)).toEqual({ id, queue: "default", type: "t", payload: { a: 1 }, priority: 0, max_attempts: 7 })
    expect(fastRow({ type: "t", delayMs: 5 }, defaults)).toBeUndefined()
    expect(fastRow({ type: "t", removeOnComplete: true }, defaults)).toMatchObject({ remove_on_complete: true })
    expect(fastRow({ type: "t", removeOnComplete: "yes" }, defaults)).toBeUndefined()
    expect(fastRow({ type: "", payload: {} }, defaults)).toBeUndefined()
    expect(fastRow({ type: "t", priority: 1001 }, defaults)).toBeUndefined()
    const bad = toRow({ type: "t", priority: 1001 }, 3, defaults)
    expect(bad).toBeInstanceOf(InvalidEnqueueRequest)
    expect(bad).toMatchObject({ index: 3, field: "priority" })
  })

  it("names the store's attempt limit in every row whose request names none", () => {
    expect(toRow({ type: "t", delayMs: 5 }, 0, defaults)).toMatchObject({ max_attempts: 7, delay_ms: 5 })
    expect(toRow({ type: "t", maxAttempts: 3 }, 0, defaults)).toMatchObject({ max_attempts: 3 })
    expect(toRow({ type: "t", maxAttempts: 0 }, 0, defaults)).toMatchObject({ _tag: "InvalidEnqueueRequest", field: "maxAttempts" })
  })
})
