/**
 * One task that arrives by Kafka with a `traceparent`, traced end to end through
 * real exporters: the runtime (Taskfiber.layerWithoutDatabase with Kafka, over the
 * test broker) under Telemetry with OTEL_ENABLED, exporting to an OTLP/HTTP
 * receiver on loopback. The receiver gets the whole tree — the producer's span →
 * the ingress's enqueue → the run → the handler's own span, and the run → the
 * status event's produce — and the status message carries the produce span on.
 */
import { expect, it } from "@effect/vitest"
import { Kafka, logLevel } from "kafkajs"
import { Deferred, Effect, Layer, Option, Schema } from "effect"
import * as Logging from "../../src/observability/Logging.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as TraceContext from "../../src/domain/TraceContext.ts"
import { newTaskId } from "../../src/store/TaskId.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import { KafkaTestBroker } from "../support/kafka/KafkaTestBroker.ts"
import * as OtlpReceiver from "../support/OtlpReceiver.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const Traced = Job.define({
  name: "traced",
  queue: "trace-tree",
  priority: 3,
  payload: Schema.Struct({ n: Schema.Number }),
  run: ({ n }) => Effect.withSpan(Effect.succeed(n * 2), "handler's own")
})

const quiet = Logging.layerWith({ ...Logging.defaults, level: "Warn" }, { write: () => {}, isTTY: false })

it.layer(TestDatabase.layer(), { timeout: 90_000, excludeTestServices: true })("a trace across Kafka, exported", (it) => {
  it.effect("producer → ingress → run → handler's span, and run → status produce, in one trace at the receiver", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.make
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 1)
      broker.createTopic("task-status", 1)
      const telemetry = Telemetry.layerWith(
        { enabled: true, endpoint: receiver.url, serviceName: "trace-tree", serviceVersion: "1.0.0", resourceAttributes: {}, exportInterval: "100 millis" },
        { ...Logging.defaults, level: "Warn" },
        { write: () => {}, isTTY: false }
      ).pipe(Layer.provide(quiet))
      const runtime = Taskfiber.layerWithoutDatabase({
        jobs: [Traced],
        config: Runtime.testConfig(),
        kafka: {
          brokers: broker.brokers, clientId: "trace-tree", topics: ["tasks"], groupId: "trace-tree",
          statusTopic: Option.some("task-status"), partitionsConcurrently: 1, maxMessageBytes: 1_000_000,
          memberTimeoutMs: 6_000, ssl: false, sasl: Option.none()
        }
      })
      yield* Layer.build(runtime.pipe(Layer.provide(telemetry)))

      // A consumer of the status topic, as a downstream service: the trace it continues.
      const kafka = new Kafka({ clientId: "trace-tree-test", brokers: [...broker.brokers], logLevel: logLevel.NOTHING })
      const id = newTaskId()
      const succeeded = yield* Deferred.make<string>()
      const consumer = kafka.consumer({ groupId: "status-reader", sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
      yield* Effect.acquireRelease(Effect.promise(() => consumer.connect()), () => Effect.promise(() => consumer.disconnect()))
      yield* Effect.promise(() => consumer.subscribe({ topic: "task-status", fromBeginning: true }))
      yield* Effect.promise(() =>
        consumer.run({
          eachMessage: async ({ message }) => {
            if (String(message.key) === id && String(message.headers?.status) === "succeeded") {
              Deferred.doneUnsafe(succeeded, Effect.succeed(String(message.headers?.traceparent)))
            }
          }
        })
      )

      // The producer: a span of the test's own, exported by the same tracer, named in the message.
      const producer = kafka.producer()
      yield* Effect.acquireRelease(Effect.promise(() => producer.connect()), () => Effect.promise(() => producer.disconnect()))
      const producerSpan = yield* Effect.gen(function*() {
        const span = yield* Effect.currentSpan
        yield* Effect.promise(() =>
          producer.send({
            topic: "tasks", acks: -1,
            messages: [{ headers: { "task-id": id, "task-type": "traced", traceparent: TraceContext.format(span) }, value: JSON.stringify({ n: 21 }) }]
          })
        )
        return span
      }).pipe(Effect.withSpan("test producer", { kind: "producer" }), Effect.provide(telemetry))

      const statusTraceparent = yield* Deferred.await(succeeded)
      const publish = yield* receiver.awaitSpan((s) =>
        s.name === "taskfiber.publish task-status" && OtlpReceiver.attribute(s.attributes, "taskfiber.status") === "succeeded" &&
        OtlpReceiver.attribute(s.attributes, "taskfiber.task_id") === id, "30 seconds")
      const find = (name: string) => receiver.awaitSpan((s) => s.name === name && s.traceId === producerSpan.traceId, "30 seconds")
      const produced = yield* find("test producer")
      const enqueue = yield* find("Tasks.enqueue")
      const run = yield* find("taskfiber.run traced")
      const own = yield* find("handler's own")

      for (const s of [produced, enqueue, run, own, publish]) expect(s.traceId).toBe(producerSpan.traceId)
      expect(produced.spanId).toBe(producerSpan.spanId)
      expect(enqueue.parentSpanId).toBe(produced.spanId)
      expect(run.parentSpanId).toBe(enqueue.spanId)
      expect(own.parentSpanId).toBe(run.spanId)
      expect(publish.parentSpanId).toBe(run.spanId)
      expect(Object.fromEntries(["taskfiber.task_id", "taskfiber.type", "taskfiber.attempt", "taskfiber.priority", "taskfiber.queue", "taskfiber.outcome"]
        .map((k) => [k, OtlpReceiver.attribute(run.attributes, k)]))).toEqual({
        "taskfiber.task_id": id, "taskfiber.type": "traced", "taskfiber.attempt": 1, "taskfiber.priority": 3,
        "taskfiber.queue": "trace-tree", "taskfiber.outcome": "succeeded"
      })
      expect(OtlpReceiver.attribute(run.resource, "service.name")).toBe("trace-tree")
      // The status message carries its produce span: a downstream consumer continues below it.
      expect(TraceContext.parse(statusTraceparent)).toEqual({ traceId: producerSpan.traceId, spanId: publish.spanId, sampled: true })
    }).pipe(Effect.scoped))
})
