import { describe, expect, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { EnqueueRequest, Task, TaskEvent } from "../../src/domain/Task.ts"

const decodeRequest = Schema.decodeUnknownResult(EnqueueRequest)
const id = "0b9a5f0e-3c1d-4f6b-9a7e-2d4c8e1f5a3b"

const failureMessage = (input: unknown): string => {
  const result = decodeRequest(input)
  if (Result.isSuccess(result)) throw new Error(`expected ${JSON.stringify(input)} to be rejected`)
  return result.failure.message
}

describe("EnqueueRequest", () => {
  it("decodes a minimal input with the defaults", () => {
    expect(decodeRequest({ type: "email.send" })).toEqual(Result.succeed({
      type: "email.send",
      queue: "default",
      payload: {},
      priority: 0
    }))
  })

  it("decodes a full input, dates from ISO strings or Date values", () => {
    const input = {
      type: "email.send",
      queue: "mail",
      payload: { to: "a@example.com" },
      priority: -20,
      maxAttempts: 3,
      id,
      dedupeKey: "welcome:42",
      runAt: "2030-01-02T03:04:05.000Z",
      traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    }
    const fromString = Schema.decodeUnknownSync(EnqueueRequest)(input)
    expect(fromString.runAt).toEqual(new Date("2030-01-02T03:04:05.000Z"))
    expect(fromString.maxAttempts).toBe(3)
    const fromDate = Schema.decodeUnknownSync(EnqueueRequest)({ ...input, runAt: new Date(0) })
    expect(fromDate.runAt?.getTime()).toBe(0)
    expect(Schema.decodeUnknownSync(EnqueueRequest)({ type: "t", delayMs: 500 }).delayMs).toBe(500)
  })

  it("names the bad field in the error message", () => {
    expect(failureMessage({ type: "t", priority: "high" })).toContain(`["priority"]`)
    expect(failureMessage({ type: "t", priority: 1001 })).toContain(`["priority"]`)
    expect(failureMessage({ type: "t", maxAttempts: 0 })).toContain(`["maxAttempts"]`)
    expect(failureMessage({ type: "t", id: "not-a-uuid" })).toContain(`["id"]`)
    expect(failureMessage({ type: "t", dedupeKey: "" })).toContain(`["dedupeKey"]`)
    expect(failureMessage({ type: "t", delayMs: -1 })).toContain(`["delayMs"]`)
    expect(failureMessage({ type: "t", runAt: "yesterday-ish" })).toContain(`["runAt"]`)
    expect(failureMessage({ type: "" })).toContain(`["type"]`)
    expect(failureMessage({ queue: "q" })).toContain(`["type"]`)
  })

  it("refuses runAt and delayMs together", () => {
    expect(failureMessage({ type: "t", runAt: new Date(0), delayMs: 10 })).toMatch(/runAt or delayMs[\s\S]*\["delayMs"\]/)
  })
})

describe("Task", () => {
  const row = {
    id,
    queue: "default",
    type: "email.send",
    payload: { to: "a@example.com" },
    priority: 0,
    status: "retrying",
    attempt: 2,
    revision: 3,
    maxAttempts: 25,
    runAt: "2030-01-01T00:00:10.000Z",
    leaseExpiresAt: null,
    workerId: null,
    progress: null,
    checkpoint: { page: 3 },
    result: null,
    lastError: { tag: "TransientError", message: "smtp 451", classification: "transient" },
    dedupeKey: null,
    createdAt: new Date("2030-01-01T00:00:00.000Z"),
    startedAt: "2030-01-01T00:00:01.000Z",
    finishedAt: null,
    updatedAt: "2030-01-01T00:00:02.000Z",
    traceparent: null,
    removeOnComplete: false
  }

  it("decodes a stored row", () => {
    const task = Schema.decodeUnknownSync(Task)(row)
    expect(task.status).toBe("retrying")
    expect(task.runAt).toEqual(new Date("2030-01-01T00:00:10.000Z"))
    expect(task.startedAt).toEqual(new Date("2030-01-01T00:00:01.000Z"))
    expect(task.lastError?.classification).toBe("transient")
  })

  it("rejects an unknown status or a malformed last error", () => {
    expect(Result.isFailure(Schema.decodeUnknownResult(Task)({ ...row, status: "done" }))).toBe(true)
    const badError = Schema.decodeUnknownResult(Task)({ ...row, lastError: { tag: "X", message: "m", classification: "fatal" } })
    expect(Result.isFailure(badError) && badError.failure.message).toContain(`["lastError"]["classification"]`)
  })

  it("decodes a creation event with no previous status", () => {
    const event = Schema.decodeUnknownSync(TaskEvent)({
      taskId: id,
      seq: 1,
      from: null,
      to: "queued",
      attempt: 0,
      error: null,
      workerId: null,
      at: "2030-01-01T00:00:00.000Z"
    })
    expect(event.from).toBeNull()
    expect(event.at).toEqual(new Date("2030-01-01T00:00:00.000Z"))
  })
})
