/**
 * One batch of Kafka messages into a real database in one transaction: tasks for
 * the valid ones with the messages' ids, dead letters (raw bytes, headers, topic,
 * partition, offset, reason) for the invalid ones, cancels applied; delivered again,
 * it writes nothing twice; failing inside, it writes nothing at all.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as IngestBatch from "../../../src/ingress/kafka/IngestBatch.ts"
import type { KafkaMessage } from "../../../src/ingress/kafka/MessageCodec.ts"
import * as Job from "../../../src/runtime/Job.ts"
import * as JobRegistry from "../../../src/runtime/JobRegistry.ts"
import { DeadLetters } from "../../../src/store/DeadLetters.ts"
import { TaskStore } from "../../../src/store/TaskStore.ts"
import * as Runtime from "../../support/Runtime.ts"

const Email = Job.define({ name: "send-email", queue: "emails", payload: Schema.Struct({ to: Schema.String }), run: () => Effect.void })
const registry = JobRegistry.make([Email])
const limits = { maxValueBytes: 10_000 }
const ids = ["01a23a8f-9d4b-799a-9758-de7298eb7c01", "01a23a8f-9d4b-799a-9758-de7298eb7c02", "01a23a8f-9d4b-799a-9758-de7298eb7c03"]

let offset = 0
const message = (headers: Record<string, string>, value: string | null): KafkaMessage => ({
  topic: "tasks",
  partition: 3,
  offset: String(offset++),
  timestamp: "1764748800000",
  headers,
  value: value === null ? null : Buffer.from(value)
})

interface LetterRow {
  readonly task_id: string | null
  readonly type: string | null
  readonly reason: string
  readonly raw: Uint8Array | null
  readonly headers: Record<string, string>
  readonly topic: string
  readonly kafka_partition: number
  readonly kafka_offset: string
}

it.layer(Runtime.base([Email]), { timeout: 60_000 })("IngestBatch", (it) => {
  it.effect("valid messages become tasks with their ids, invalid ones dead letters, in one transaction; a redelivery writes nothing twice", () =>
    Effect.gen(function*() {
      const batch = [
        message({ "task-id": ids[0]!, "task-type": "send-email", priority: "7" }, JSON.stringify({ to: "ada@example.com" })),
        message({ "task-id": ids[1]!, "task-type": "send-email" }, "{not json"),
        message({ "task-type": "send-email" }, JSON.stringify({ to: "b" })),
        message({ "task-id": ids[2]!, "task-type": "send-email" }, JSON.stringify({ to: "grace@example.com" })),
        message({ "task-id": ids[2]!, command: "cancel" }, null)
      ]
      const { letters: told, ...first } = yield* IngestBatch.ingest(registry, batch, limits)
      expect(first).toEqual({ created: 2, existing: 0, deadLettered: 2, cancelled: 1 })
      expect(told.map((l) => l.offset)).toEqual([batch[1]!.offset, batch[2]!.offset])

      const store = yield* TaskStore
      const task = Option.getOrThrow(yield* store.get(ids[0]!)).task
      expect(task).toMatchObject({ type: "send-email", queue: "emails", priority: 7, status: "queued", payload: { to: "ada@example.com" } })
      expect(Option.getOrThrow(yield* store.get(ids[2]!)).task.status).toBe("cancelled")

      const sql = yield* SqlClient
      const letters = yield* sql<LetterRow>`
        select task_id, type, reason, raw, headers, topic, kafka_partition, kafka_offset::text
          from taskfiber.dead_letters where source = 'kafka' order by kafka_offset`
      expect(letters).toHaveLength(2)
      expect(letters[0]).toMatchObject({
        task_id: ids[1], type: "send-email", topic: "tasks", kafka_partition: 3, kafka_offset: batch[1]!.offset,
        headers: { "task-id": ids[1], "task-type": "send-email" }
      })
      expect(letters[0]!.reason).toMatch(/the value is not JSON/)
      expect(Buffer.from(letters[0]!.raw!).toString()).toBe("{not json")
      expect(letters[1]).toMatchObject({ task_id: null, kafka_offset: batch[2]!.offset })
      expect(letters[1]!.reason).toMatch(/header "task-id" is missing/)

      // Delivered again (its offsets were never committed): found, not written again.
      const again = yield* IngestBatch.ingest(registry, batch, limits)
      expect(again).toMatchObject({ created: 0, existing: 2, deadLettered: 0, cancelled: 0 })
      const count = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.dead_letters where source = 'kafka'`
      expect(count[0]!.n).toBe(2)
    }))

  it.effect("a batch that fails inside its transaction writes nothing: no task, no dead letter", () =>
    Effect.gen(function*() {
      const id = "01a23a8f-9d4b-799a-9758-de7298eb7c10"
      const batch = [
        message({ "task-id": id, "task-type": "send-email" }, JSON.stringify({ to: "x" })),
        message({ "task-type": "send-email" }, "{}")
      ]
      // The dead letters' write fails after the enqueue ran: the crash between the two.
      const failing = Layer.succeed(DeadLetters, DeadLetters.of({ ...(yield* DeadLetters), record: () => Effect.die(new Error("crash between the statements")) }))
      const exit = yield* Effect.exit(IngestBatch.ingest(registry, batch, limits).pipe(Effect.provide(failing)))
      expect(exit._tag).toBe("Failure")
      const store = yield* TaskStore
      expect(Option.isNone(yield* store.get(id))).toBe(true)
      const sql = yield* SqlClient
      const letters = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.dead_letters where kafka_offset = ${Number(batch[1]!.offset)}`
      expect(letters[0]!.n).toBe(0)
      // Delivered again, it is written whole.
      expect(yield* IngestBatch.ingest(registry, batch, limits)).toMatchObject({ created: 1, deadLettered: 1 })
    }))

  it.effect("a request the store refuses goes to the dead letters, and the rest of its batch is written", () =>
    Effect.gen(function*() {
      const good = "01a23a8f-9d4b-799a-9758-de7298eb7c20"
      const bad = "01a23a8f-9d4b-799a-9758-de7298eb7c21"
      const batch = [
        message({ "task-id": good, "task-type": "send-email" }, JSON.stringify({ to: "x" })),
        // Valid JSON and a valid string for the schema, but jsonb refuses U+0000.
        message({ "task-id": bad, "task-type": "send-email" }, JSON.stringify({ to: "a\u0000b" }))
      ]
      const { letters: told, ...written } = yield* IngestBatch.ingest(registry, batch, limits)
      expect(written).toEqual({ created: 1, existing: 0, deadLettered: 1, cancelled: 0 })
      expect(told.map((l) => [l.offset, l.taskId])).toEqual([[batch[1]!.offset, bad]])
      const store = yield* TaskStore
      expect(Option.isSome(yield* store.get(good))).toBe(true)
      expect(Option.isNone(yield* store.get(bad))).toBe(true)
      const sql = yield* SqlClient
      const letter = yield* sql<{ reason: string; task_id: string }>`
        select reason, task_id from taskfiber.dead_letters where kafka_offset = ${Number(batch[1]!.offset)}`
      expect(letter[0]).toMatchObject({ task_id: bad })
      expect(letter[0]!.reason).toMatch(/the store refused the request at payload.*U\+0000/)
    }))
})
