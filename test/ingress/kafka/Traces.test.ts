/**
 * A trace across Kafka, with a recording tracer: a message's `traceparent` is the
 * parent of its task's enqueue span, which parents its run span, which parents the
 * handler's own spans; the status events carry the trace onwards.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Queue, Schema, Scope } from "effect"
import { TransientError } from "../../../src/domain/Errors.ts"
import * as RetryPolicy from "../../../src/domain/RetryPolicy.ts"
import { SqlClient } from "effect/sql/SqlClient"
import * as IngestBatch from "../../../src/ingress/kafka/IngestBatch.ts"
import * as Job from "../../../src/runtime/Job.ts"
import * as JobRegistry from "../../../src/runtime/JobRegistry.ts"
import { newTaskId } from "../../../src/store/TaskId.ts"
import { recordingTracer } from "../../support/recordingTracer.ts"
import * as Runtime from "../../support/Runtime.ts"

const Traced = Job.define({
  name: "traced",
  queue: "traces",
  payload: Schema.Struct({}),
  run: () => Effect.withSpan(Effect.void, "handler's own")
})

// Fails its first run, succeeds its second.
let flakyRuns = 0
const FlakyTraced = Job.define({
  name: "flaky-traced",
  queue: "traces",
  payload: Schema.Struct({}),
  retry: RetryPolicy.exponential({ baseMs: 10, maxDelayMs: 10, jitter: 0, maxAttempts: 3 }),
  run: () => (++flakyRuns === 1 ? Effect.fail(new TransientError({ message: "not yet" })) : Effect.void)
})

const traceId = "0af7651916cd43dd8448eb211c80319c"
const producerSpan = "b7ad6b7169203331"

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("traces across Kafka", (it) => {
  it.effect("the message's traceparent parents the enqueue span, the enqueue the run, the run the handler's; status events carry it", () =>
    Effect.gen(function*() {
      const { ended, tracer } = recordingTracer()
      const id = newTaskId()
      const sql = yield* SqlClient
      yield* sql`update taskfiber.settings set outbox_topic = 'task-status'`
      const scope = yield* Scope.make()
      yield* Effect.gen(function*() {
        const s = yield* Runtime.startSupervisor([Traced])
        const outcomes = yield* s.outcomes
        yield* IngestBatch.ingest(JobRegistry.make([Traced]), [{
          topic: "tasks", partition: 0, offset: "0", timestamp: "1764748800000",
          headers: { "task-id": id, "task-type": "traced", traceparent: `00-${traceId}-${producerSpan}-01` },
          value: Buffer.from("{}")
        }], { maxValueBytes: 1000 })
        expect((yield* Queue.take(outcomes)).taskId).toBe(id)
      }).pipe(Effect.withTracer(tracer), Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)

      const enqueue = ended.find((s) => s.name === "Tasks.enqueue")!
      const run = ended.find((s) => s.name === "taskfiber.run traced")!
      const own = ended.find((s) => s.name === "handler's own")!
      expect(enqueue.traceId).toBe(traceId)
      expect(Option.map(enqueue.parent, (p) => p.spanId)).toEqual(Option.some(producerSpan))
      expect(enqueue.attributes.get("taskfiber.task_id")).toBe(id)
      expect(run.traceId).toBe(traceId)
      // The task keeps the enqueue span as its trace parent: its run follows the ingress.
      expect(Option.map(run.parent, (p) => p.spanId)).toEqual(Option.some(enqueue.spanId))
      expect(run.attributes.get("taskfiber.outcome")).toBe("succeeded")
      expect(Option.map(own.parent, (p) => p.spanId)).toEqual(Option.some(run.spanId))
      // The status events go out in the same trace.
      const headers = yield* sql<{ headers: Record<string, string>; to: string }>`
        select headers, payload ->> 'to' as to from taskfiber.outbox where key = ${id} order by id`
      expect(headers.map((h) => h.to)).toEqual(["queued", "running", "succeeded"])
      for (const h of headers) expect(h.headers.traceparent).toContain(traceId)
      // The outcome's event is the run's child; the others follow the enqueue.
      expect(headers.map((h) => h.headers.traceparent!.split("-")[2])).toEqual([enqueue.spanId, enqueue.spanId, run.spanId])
      yield* sql`update taskfiber.settings set outbox_topic = null`
    }))

  it.effect("each outcome's event follows its own run: a retry's the first run's span, the success the second's", () =>
    Effect.gen(function*() {
      const { ended, tracer } = recordingTracer()
      const id = newTaskId()
      const sql = yield* SqlClient
      yield* sql`update taskfiber.settings set outbox_topic = 'task-status'`
      const scope = yield* Scope.make()
      yield* Effect.gen(function*() {
        const s = yield* Runtime.startSupervisor([FlakyTraced])
        const outcomes = yield* s.outcomes
        yield* IngestBatch.ingest(JobRegistry.make([FlakyTraced]), [{
          topic: "tasks", partition: 0, offset: "1", timestamp: "1764748800000",
          headers: { "task-id": id, "task-type": "flaky-traced", traceparent: `00-${traceId}-${producerSpan}-01` },
          value: Buffer.from("{}")
        }], { maxValueBytes: 1000 })
        expect((yield* Queue.take(outcomes)).outcome).toBe("retrying")
        expect((yield* Queue.take(outcomes)).outcome).toBe("succeeded")
      }).pipe(Effect.withTracer(tracer), Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)

      const enqueue = ended.find((s) => s.name === "Tasks.enqueue" && s.attributes.get("taskfiber.task_id") === id)!
      const runs = ended.filter((s) => s.name === "taskfiber.run flaky-traced")
      expect(runs.map((r) => r.attributes.get("taskfiber.outcome"))).toEqual(["retrying", "succeeded"])
      for (const run of runs) expect(Option.map(run.parent, (p) => p.spanId)).toEqual(Option.some(enqueue.spanId))
      const events = yield* sql<{ headers: Record<string, string>; to: string }>`
        select headers, payload ->> 'to' as to from taskfiber.outbox where key = ${id} order by id`
      expect(events.map((e) => [e.to, e.headers.traceparent!.split("-")[2]])).toEqual([
        ["queued", enqueue.spanId],
        ["running", enqueue.spanId],
        ["retrying", runs[0]!.spanId],
        ["running", enqueue.spanId],
        ["succeeded", runs[1]!.spanId]
      ])
      yield* sql`update taskfiber.settings set outbox_topic = null`
    }))
})
