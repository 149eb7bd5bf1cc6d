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

/**
 * One traced message of `job` through the ingress and a supervisor of its own,
 * under a recording tracer, with the outbox on: the outcomes of its runs, in order,
 * and the spans ended; the outbox is turned off again after.
 */
const traced = (job: Job.AnyJob, id: string, offset: string, runs: number) =>
  Effect.gen(function*() {
    const { ended, tracer } = recordingTracer()
    const sql = yield* SqlClient
    yield* sql`update taskfiber.settings set outbox_topic = 'task-status'`
    const scope = yield* Scope.make()
    const outcomes = yield* Effect.gen(function*() {
      const s = yield* Runtime.startSupervisor([job])
      const queue = yield* s.outcomes
      yield* IngestBatch.ingest(JobRegistry.make([job]), [{
        topic: "tasks", partition: 0, offset, timestamp: "1764748800000",
        headers: { "task-id": id, "task-type": job.name, traceparent: `00-${traceId}-${producerSpan}-01` },
        value: Buffer.from("{}")
      }], { maxValueBytes: 1000 })
      const seen: Array<string> = []
      while (seen.length < runs) {
        const next = yield* Queue.take(queue)
        if (next.taskId === id) seen.push(next.outcome)
      }
      return seen
    }).pipe(Effect.withTracer(tracer), Scope.provide(scope))
    yield* Scope.close(scope, Exit.void)
    const events = yield* sql<{ headers: Record<string, string>; to: string }>`
      select headers, payload ->> 'to' as to from taskfiber.outbox where key = ${id} order by id`
    yield* sql`update taskfiber.settings set outbox_topic = null`
    return { outcomes, ended, events }
  })

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("traces across Kafka", (it) => {
  it.effect("the message's traceparent parents the enqueue span, the enqueue the run, the run the handler's; status events carry it", () =>
    Effect.gen(function*() {
      const id = newTaskId()
      const { outcomes, ended, events: headers } = yield* traced(Traced, id, "0", 1)
      expect(outcomes).toEqual(["succeeded"])
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
      expect(headers.map((h) => h.to)).toEqual(["queued", "running", "succeeded"])
      for (const h of headers) expect(h.headers.traceparent).toContain(traceId)
      // The outcome's event is the run's child; the others follow the enqueue.
      expect(headers.map((h) => h.headers.traceparent!.split("-")[2])).toEqual([enqueue.spanId, enqueue.spanId, run.spanId])
    }))

  it.effect("each outcome's event follows its own run: a retry's the first run's span, the success the second's", () =>
    Effect.gen(function*() {
      const id = newTaskId()
      const { outcomes, ended, events } = yield* traced(FlakyTraced, id, "1", 2)
      expect(outcomes).toEqual(["retrying", "succeeded"])
      const enqueue = ended.find((s) => s.name === "Tasks.enqueue" && s.attributes.get("taskfiber.task_id") === id)!
      const runs = ended.filter((s) => s.name === "taskfiber.run flaky-traced")
      expect(runs.map((r) => r.attributes.get("taskfiber.outcome"))).toEqual(["retrying", "succeeded"])
      for (const run of runs) expect(Option.map(run.parent, (p) => p.spanId)).toEqual(Option.some(enqueue.spanId))
      expect(events.map((e) => [e.to, e.headers.traceparent!.split("-")[2]])).toEqual([
        ["queued", enqueue.spanId],
        ["running", enqueue.spanId],
        ["retrying", runs[0]!.spanId],
        ["running", enqueue.spanId],
        ["succeeded", runs[1]!.spanId]
      ])
    }))
})
