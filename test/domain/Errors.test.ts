import { describe, expect, it } from "@effect/vitest"
import { Effect, Result, Schema } from "effect"
import {
  LeaseExpired,
  PayloadInvalid,
  PermanentError,
  TaskCancelled,
  TaskTimeout,
  UnknownTaskType
} from "../../src/domain/Errors.ts"

describe("Errors", () => {
  it("give messages that say what happened", () => {
    expect(new TaskTimeout({ taskId: "t1", timeoutMs: 500 }).message).toBe("task t1 exceeded its 500 ms time limit")
    expect(new TaskCancelled({ taskId: "t1" }).message).toBe("task t1 was cancelled")
    expect(new LeaseExpired({ taskId: "t1", workerId: "w1" }).message).toBe("the lease of worker w1 on task t1 expired")
    expect(new UnknownTaskType({ taskType: "x.y" }).message).toBe(`no handler is registered for task type "x.y"`)
    const cause = new Error("card declined")
    const permanent = new PermanentError({ message: "payment refused", cause })
    expect(permanent.message).toBe("payment refused")
    expect(permanent.cause).toBe(cause)
  })

  it("PayloadInvalid names the task type and the field", () => {
    const error = new PayloadInvalid({ taskType: "email.send", path: "to", message: "Expected string" })
    expect(error.message).toBe(`invalid payload for task type "email.send" at to: Expected string`)
    expect(error.issue).toBe("Expected string")
    expect(error.path).toBe("to")
  })

  it("PayloadInvalid.fromSchemaError takes the path of the first issue", () => {
    const Payload = Schema.Struct({ items: Schema.Array(Schema.Struct({ sku: Schema.String })) })
    const result = Schema.decodeUnknownResult(Payload)({ items: [{ sku: "a" }, { sku: 7 }] })
    if (Result.isSuccess(result)) throw new Error("expected a decoding failure")
    const error = PayloadInvalid.fromSchemaError("order.ship", result.failure)
    expect(error.path).toBe("items.1.sku")
    expect(error.taskType).toBe("order.ship")
    expect(error.message).toContain("items.1.sku")
  })

  it.effect("fail effects and are caught by tag", () =>
    Effect.gen(function*() {
      const caught = yield* Effect.fail(new TaskCancelled({ taskId: "t1" })).pipe(
        Effect.catchTag("TaskCancelled", (e) => Effect.succeed(e.taskId))
      )
      expect(caught).toBe("t1")
      // Yielding the error itself fails the generator with it.
      const exit = yield* Effect.exit(Effect.gen(function*() {
        return yield* new PermanentError({ message: "no" })
      }))
      expect(exit).toMatchObject({ _tag: "Failure" })
    }))
})
