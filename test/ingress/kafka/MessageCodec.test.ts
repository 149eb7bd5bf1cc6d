/**
 * What a Kafka message asks for, from its headers and value: every way it can be
 * wrong gives a reason naming what, and nothing throws, whatever the bytes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as MessageCodec from "../../../src/ingress/kafka/MessageCodec.ts"
import * as Job from "../../../src/runtime/Job.ts"
import * as JobRegistry from "../../../src/runtime/JobRegistry.ts"

const Email = Job.define({
  name: "send-email",
  queue: "emails",
  payload: Schema.Struct({ to: Schema.String, subject: Schema.String }),
  run: () => Effect.void
})
const registry = JobRegistry.make([Email])
const limits = { maxValueBytes: 1024 }
const id = "01a23a8f-9d4b-799a-9758-de7298eb7c55"

const message = (headers: NonNullable<MessageCodec.KafkaMessage["headers"]>, value: string | Buffer | null): MessageCodec.KafkaMessage => ({
  topic: "tasks",
  partition: 0,
  offset: "7",
  timestamp: "1764748800000",
  headers,
  value: typeof value === "string" ? Buffer.from(value) : value
})
const decode = (headers: NonNullable<MessageCodec.KafkaMessage["headers"]>, value: string | Buffer | null) =>
  MessageCodec.decode(registry, message(headers, value), limits)

describe("MessageCodec", () => {
  it("a message with its headers and a valid payload is an enqueue with the message's task id", () => {
    const decoded = decode(
      {
        "task-id": Buffer.from(id.toUpperCase()),
        "task-type": Buffer.from("send-email"),
        priority: "5",
        "run-at": "2030-01-01T10:00:00+02:00",
        "dedupe-key": "welcome-ada",
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      },
      JSON.stringify({ to: "ada@example.com", subject: "hi" })
    )
    expect(decoded).toEqual({
      _tag: "Enqueue",
      request: {
        type: "send-email",
        queue: "emails",
        payload: { to: "ada@example.com", subject: "hi" },
        priority: 5,
        id,
        runAt: "2030-01-01T08:00:00.000Z",
        dedupeKey: "welcome-ada",
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      }
    })
  })

  it("command cancel needs only the task id", () => {
    expect(decode({ "task-id": id, command: "cancel" }, null)).toEqual({ _tag: "Cancel", taskId: id })
  })

  it("a malformed traceparent is ignored, as W3C asks; the task is enqueued without it", () => {
    const decoded = decode({ "task-id": id, "task-type": "send-email", traceparent: "nonsense" }, JSON.stringify({ to: "a", subject: "b" }))
    expect(decoded._tag).toBe("Enqueue")
    expect(decoded._tag === "Enqueue" && "traceparent" in decoded.request).toBe(false)
  })

  const payload = JSON.stringify({ to: "a", subject: "b" })
  const cases: ReadonlyArray<readonly [string, NonNullable<MessageCodec.KafkaMessage["headers"]>, string | Buffer | null, RegExp]> = [
    ["no task id", { "task-type": "send-email" }, payload, /header "task-id" is missing/],
    ["a task id that is no UUID", { "task-id": "42", "task-type": "send-email" }, payload, /header "task-id" is not a UUID: "42"/],
    ["a task id given twice", { "task-id": [id, id], "task-type": "send-email" }, payload, /header "task-id" is given 2 times/],
    ["no type", { "task-id": id }, payload, /header "task-type" is missing/],
    ["an unknown type", { "task-id": id, "task-type": "nope" }, payload, /no handler is registered for task type "nope"/],
    ["a fractional priority", { "task-id": id, "task-type": "send-email", priority: "1.5" }, payload, /header "priority" is not an integer in \[-1000, 1000\]/],
    ["a run-at without a zone", { "task-id": id, "task-type": "send-email", "run-at": "2030-01-01T10:00:00" }, payload, /header "run-at" is not an ISO 8601 timestamp with a zone/],
    ["an unknown command", { "task-id": id, command: "pause" }, null, /the only command is "cancel"/],
    ["a null value", { "task-id": id, "task-type": "send-email" }, null, /no value \(a tombstone\)/],
    ["a value that is not JSON", { "task-id": id, "task-type": "send-email" }, "{nope", /the value is not JSON/],
    ["a value over the limit", { "task-id": id, "task-type": "send-email" }, "x".repeat(1025), /1025 bytes, more than the limit of 1024/],
    ["a payload its schema refuses", { "task-id": id, "task-type": "send-email" }, JSON.stringify({ to: 1 }), /invalid payload for task type "send-email" at to/]
  ]
  for (const [what, headers, value, reason] of cases) {
    it(`${what} is invalid, saying why`, () => {
      const decoded = decode(headers, value)
      expect(decoded._tag).toBe("Invalid")
      expect(decoded._tag === "Invalid" && decoded.reason).toMatch(reason)
    })
  }

  it("an invalid message keeps the task id and type it could read, for its dead letter", () => {
    expect(decode({ "task-id": id, "task-type": "send-email" }, "{nope")).toMatchObject({ _tag: "Invalid", taskId: id, type: "send-email" })
  })

  it.prop(
    "is total: any headers and any bytes give an enqueue, a cancel or a reason",
    {
      headers: Schema.Record(Schema.Literals(["task-id", "task-type", "priority", "run-at", "dedupe-key", "traceparent", "command", "other"]), Schema.String),
      value: Schema.String,
      useId: Schema.Boolean
    },
    ({ headers, useId, value }) => {
      const decoded = decode(useId ? { ...headers, "task-id": id } : headers, value)
      expect(["Enqueue", "Cancel", "Invalid"]).toContain(decoded._tag)
      if (decoded._tag === "Invalid") expect(decoded.reason.length).toBeGreaterThan(0)
    },
    { arbitrary: { runs: 300 } }
  )
})
