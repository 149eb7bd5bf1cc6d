import { describe, expect, it } from "@effect/vitest"
import { Exit, Schema } from "effect"
import { EnqueueSpec } from "../../src/domain/Task.ts"
import { fastSpec, InvalidTaskSpec, validateSpec } from "../../src/store/TaskSpec.ts"

const fixedId = () => "00000000-0000-7000-8000-000000000000"

// Spec-like values: the common keys with values of the right and of wrong shapes,
// sometimes one key more.
const Anything = Schema.Union([Schema.String, Schema.Number, Schema.Boolean, Schema.Null, Schema.Json])
const SpecLike = Schema.Struct({
  type: Schema.optional(Schema.Union([Schema.String, Schema.Number, Schema.Null])),
  queue: Schema.optional(Schema.Union([Schema.String, Schema.Number])),
  payload: Schema.optional(Schema.Json),
  priority: Schema.optional(Schema.Union([Schema.Int, Schema.Number, Schema.String])),
  delayMs: Schema.optional(Anything),
  removeOnComplete: Schema.optional(Schema.Union([Schema.Boolean, Schema.String, Schema.Null]))
})

describe("task specs", () => {
  it.prop("the hand-written check accepts only what the EnqueueSpec schema accepts, with the same values", { spec: SpecLike }, ({ spec }) => {
    const fast = fastSpec(spec, fixedId)
    if (fast === undefined) return
    const decoded = Schema.decodeUnknownExit(EnqueueSpec)(spec)
    expect(Exit.isSuccess(decoded)).toBe(true)
    if (Exit.isSuccess(decoded)) {
      const d = decoded.value
      expect(fast).toEqual({
        id: fixedId(),
        queue: d.queue,
        type: d.type,
        payload: d.payload,
        priority: d.priority,
        ...(d.removeOnComplete === true ? { remove_on_complete: true } : {})
      })
    }
  })

  it("takes the common spec by hand and leaves everything else to the schema", () => {
    expect(fastSpec({ type: "t", payload: { a: 1 } }, fixedId)).toEqual({ id: fixedId(), queue: "default", type: "t", payload: { a: 1 }, priority: 0 })
    expect(fastSpec({ type: "t", delayMs: 5 }, fixedId)).toBeUndefined()
    expect(fastSpec({ type: "t", removeOnComplete: true }, fixedId)).toMatchObject({ remove_on_complete: true })
    expect(fastSpec({ type: "t", removeOnComplete: "yes" }, fixedId)).toBeUndefined()
    expect(fastSpec({ type: "", payload: {} }, fixedId)).toBeUndefined()
    expect(fastSpec({ type: "t", priority: 1001 }, fixedId)).toBeUndefined()
    const bad = validateSpec({ type: "t", priority: 1001 }, 3, fixedId)
    expect(bad).toBeInstanceOf(InvalidTaskSpec)
    expect(bad).toMatchObject({ index: 3, field: "priority" })
  })
})
