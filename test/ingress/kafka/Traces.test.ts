/**
 * A trace across Kafka, with a recording tracer: a message's `traceparent` is the
 * parent of its task's enqueue span, which parents its run span, which parents the
 * handler's own spans; the status events carry the trace onwards.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Queue, Schema, Scope } from "effect"
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
})
