/**
 * The Kafka ingress end to end: the real kafkajs client against the Kafka test
 * broker (test/support/kafka), a real database, a running supervisor. Messages
 * become tasks with the ids their headers carry and run; bad ones are dead letters
 * and never hold up their partition; offsets are committed only after the batch's
 * transaction; a consumer that restarts on uncommitted messages writes nothing
 * twice; a cancel command cancels a running task; a database outage pauses the
 * partition and nothing is lost. Every wait is on an event, bounded.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Layer, Option, Queue, Redacted, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Kafka, logLevel, type Producer } from "kafkajs"
import * as KafkaIngress from "../../../src/ingress/kafka/KafkaIngress.ts"
import type { KafkaConfig } from "../../../src/ingress/kafka/KafkaConfig.ts"
import { RuntimeEvents, type RuntimeEvent } from "../../../src/observability/RuntimeEvents.ts"
import * as Job from "../../../src/runtime/Job.ts"
import * as Supervisor from "../../../src/runtime/Supervisor.ts"
import { TaskStore } from "../../../src/store/TaskStore.ts"
import { newTaskId } from "../../../src/store/TaskId.ts"
import { KafkaTestBroker } from "../../support/kafka/KafkaTestBroker.ts"
import * as Runtime from "../../support/Runtime.ts"
import * as TcpProxy from "../../support/TcpProxy.ts"
import * as TestDatabase from "../../support/TestDatabase.ts"
import * as Database from "../../../src/store/Database.ts"
import * as Taskfiber from "../../../src/Taskfiber.ts"

const Echo = Job.define({ name: "echo", payload: Schema.Struct({ n: Schema.Number }), run: (p) => Effect.succeed(p) })
const Park = Job.define({
  name: "park",
  payload: Schema.Struct({}),
  run: () => Effect.never
})

const configFor = (broker: KafkaTestBroker, groupId: string): KafkaConfig => ({
  brokers: broker.brokers,
  clientId: "taskfiber-test",
  topics: ["tasks"],
  groupId,
  statusTopic: Option.none(),
  partitionsConcurrently: 2,
  maxMessageBytes: 1000,
  sessionTimeoutMs: 6000,
  ssl: false,
  sasl: Option.none()
})

const producerOf = (broker: KafkaTestBroker) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const producer = new Kafka({ clientId: "producer", brokers: broker.brokers, logLevel: logLevel.NOTHING }).producer()
      await producer.connect()
      return producer
    }),
    (p) => Effect.promise(() => p.disconnect())
  )

const send = (producer: Producer, messages: ReadonlyArray<{ readonly headers: Record<string, string>; readonly value: string | null; readonly partition?: number }>) =>
  Effect.promise(() =>
    producer.send({
      topic: "tasks",
      acks: -1,
      messages: messages.map((m) => ({ headers: m.headers, value: m.value, ...(m.partition === undefined ? {} : { partition: m.partition }) }))
    })
  )

/** The ingress's committed batches, as they happen. */
const committedBatches = Effect.gen(function*() {
  const events = yield* RuntimeEvents
  const queue = yield* Queue.unbounded<Extract<RuntimeEvent, { _tag: "IngressBatchCommitted" }>>()
  yield* events.subscribe(["IngressBatchCommitted"], (e) => {
    if (e._tag === "IngressBatchCommitted") Queue.offerUnsafe(queue, e)
  })
  return queue
})

/** Takes committed batches until `messages` messages were committed in all; returns them. */
const untilCommitted = (queue: Queue.Queue<Extract<RuntimeEvent, { _tag: "IngressBatchCommitted" }>>, messages: number) =>
  Effect.gen(function*() {
    const got: Array<Extract<RuntimeEvent, { _tag: "IngressBatchCommitted" }>> = []
    while (got.reduce((n, b) => n + b.messages, 0) < messages) got.push(yield* Queue.take(queue))
    return got
  }).pipe(Effect.timeout(Duration.seconds(30)))

it.layer(Runtime.layer([Echo, Park]), { timeout: 120_000, excludeTestServices: true })("KafkaIngress", (it) => {
  it.effect("messages become tasks with their headers' ids and run; bad ones are dead letters; offsets follow the commits", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 2)
      const batches = yield* committedBatches
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(KafkaIngress.layer(configFor(broker, "g-basic")), scope)
      const producer = yield* producerOf(broker)
      const ids = [newTaskId(), newTaskId(), newTaskId()]
      const outcomes = yield* (yield* Supervisor.Supervisor).outcomes
      yield* send(producer, [
        { headers: { "task-id": ids[0]!, "task-type": "echo" }, value: JSON.stringify({ n: 1 }), partition: 0 },
        { headers: { "task-id": ids[1]!, "task-type": "echo" }, value: "{not json", partition: 0 },
        { headers: { "task-id": ids[2]!, "task-type": "echo" }, value: JSON.stringify({ n: 3 }), partition: 1 },
        { headers: { "task-type": "echo" }, value: JSON.stringify({ n: 4 }), partition: 1 },
        { headers: { "task-id": newTaskId(), "task-type": "echo" }, value: "x".repeat(2000), partition: 1 }
      ])
      const committed = yield* untilCommitted(batches, 5)
      expect(committed.reduce((n, b) => n + b.created, 0)).toBe(2)
      expect(committed.reduce((n, b) => n + b.deadLettered, 0)).toBe(3)
      // Committed offsets: each partition's next after its last message.
      const admin = new Kafka({ clientId: "admin", brokers: broker.brokers, logLevel: logLevel.NOTHING }).admin()
      yield* Effect.promise(() => admin.connect())
      const offsets = yield* Effect.promise(() => admin.fetchOffsets({ groupId: "g-basic", topics: ["tasks"] }))
      yield* Effect.promise(() => admin.disconnect())
      expect(offsets[0]!.partitions.map((p) => [p.partition, p.offset]).sort()).toEqual([[0, "2"], [1, "3"]])

      const settled = new Set<string>()
      while (!(settled.has(ids[0]!) && settled.has(ids[2]!))) settled.add((yield* Queue.take(outcomes)).taskId)
      const store = yield* TaskStore
      expect(Option.getOrThrow(yield* store.get(ids[0]!)).task).toMatchObject({ status: "succeeded", result: { n: 1 } })
      const sql = yield* SqlClient
      const letters = yield* sql<{ reason: string; kafka_partition: number; kafka_offset: string }>`
        select reason, kafka_partition, kafka_offset::text from taskfiber.dead_letters where source = 'kafka' order by kafka_partition, kafka_offset`
      expect(letters.map((l) => [l.kafka_partition, l.kafka_offset])).toEqual([[0, "1"], [1, "1"], [1, "2"]])
      expect(letters[0]!.reason).toMatch(/not JSON/)
      expect(letters[1]!.reason).toMatch(/"task-id" is missing/)
      expect(letters[2]!.reason).toMatch(/more than the limit of 1000/)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.scoped))

  it.effect("messages consumed again (as after an offset commit lost in a crash) find their task and dead letter: nothing twice", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 1)
      const producer = yield* producerOf(broker)
      const ids = [newTaskId(), newTaskId()]
      yield* send(producer, [
        { headers: { "task-id": ids[0]!, "task-type": "echo" }, value: JSON.stringify({ n: 0 }) },
        { headers: { "task-id": ids[1]!, "task-type": "nope" }, value: "{}" }
      ])
      const batches = yield* committedBatches
      // The batch written, its offset commit lost (a crash between the two): the same
      // messages reach an ingress again. A second group, reading from the start, is
      // that delivery.
      const first = yield* Scope.make()
      yield* Layer.buildWithScope(KafkaIngress.layer(configFor(broker, "g-first")), first)
      const once = yield* untilCommitted(batches, 2)
      expect(once.reduce((n, b) => n + b.created + b.deadLettered, 0)).toBe(2)
      yield* Scope.close(first, Exit.void)
      const second = yield* Scope.make()
      yield* Layer.buildWithScope(KafkaIngress.layer(configFor(broker, "g-second")), second)
      const again = yield* untilCommitted(batches, 2)
      expect(again.reduce((n, b) => ({ created: n.created + b.created, existing: n.existing + b.existing, dead: n.dead + b.deadLettered }), { created: 0, existing: 0, dead: 0 }))
        .toEqual({ created: 0, existing: 1, dead: 0 })
      yield* Scope.close(second, Exit.void)
      const sql = yield* SqlClient
      const count = yield* sql<{ tasks: number; letters: number }>`
        select (select count(*)::int from taskfiber.tasks where id = ${ids[0]!}::uuid) as tasks,
               (select count(*)::int from taskfiber.dead_letters where task_id = ${ids[1]!}::uuid) as letters`
      expect(count[0]).toEqual({ tasks: 1, letters: 1 })
    }).pipe(Effect.scoped))

  it.effect("a cancel command on the topic cancels a running task", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 1)
      const events = yield* RuntimeEvents
      const started = yield* Deferred.make<string>()
      yield* events.subscribe(["Started"], (e) => {
        if (e._tag === "Started" && e.task.type === "park") Deferred.doneUnsafe(started, Effect.succeed(e.task.id))
      })
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-cancel")))
      const producer = yield* producerOf(broker)
      const id = newTaskId()
      const outcomes = yield* (yield* Supervisor.Supervisor).outcomes
      yield* send(producer, [{ headers: { "task-id": id, "task-type": "park" }, value: "{}" }])
      expect(yield* Deferred.await(started).pipe(Effect.timeout(Duration.seconds(30)))).toBe(id)
      yield* send(producer, [{ headers: { "task-id": id, command: "cancel" }, value: null }])
      let outcome = yield* Queue.take(outcomes)
      while (outcome.taskId !== id) outcome = yield* Queue.take(outcomes)
      expect(outcome.outcome).toBe("cancelled")
      const store = yield* TaskStore
      expect(Option.getOrThrow(yield* store.get(id)).task.status).toBe("cancelled")
    }).pipe(Effect.scoped))
})

// The database behind a proxy the test cuts: the batch fails, is retried, its
// partition paused and sought back; restored, the partition resumes and every
// message becomes its task, once.
it.live("a database outage pauses the partition and loses nothing: after it, every message is a task, once", () =>
  Effect.gen(function*() {
    const name = yield* TestDatabase.scopedDatabase
    const server = new URL(TestDatabase.serverUrl())
    const proxy = yield* TcpProxy.make({ host: server.hostname, port: Number(server.port || 5432) })
    const url = new URL(TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name))
    url.hostname = "127.0.0.1"
    url.port = String(proxy.port)
    yield* Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 1)
      const events = yield* RuntimeEvents
      const seen = yield* Queue.unbounded<RuntimeEvent>()
      yield* events.subscribe(["IngressPaused", "IngressResumed", "IngressBatchCommitted"], (e) => Queue.offerUnsafe(seen, e))
      const next = (tag: RuntimeEvent["_tag"]) =>
        Effect.gen(function*() {
          let e = yield* Queue.take(seen)
          while (e._tag !== tag) e = yield* Queue.take(seen)
          return e
        }).pipe(Effect.timeout(Duration.seconds(30)))
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-outage"), { retryFor: Duration.millis(500) }))
      const producer = yield* producerOf(broker)
      // One message through, so that the group is joined and consuming.
      const ids = [newTaskId(), newTaskId(), newTaskId(), newTaskId()]
      yield* send(producer, [{ headers: { "task-id": ids[0]!, "task-type": "echo" }, value: JSON.stringify({ n: 0 }) }])
      yield* next("IngressBatchCommitted")

      yield* proxy.cut
      yield* send(producer, ids.slice(1).map((id, i) => ({ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ n: i + 1 }) })))
      const paused = yield* next("IngressPaused")
      expect(paused).toMatchObject({ topic: "tasks", partition: 0, offset: "1" })
      yield* proxy.restore
      yield* next("IngressResumed")
      const committed = yield* next("IngressBatchCommitted")
      expect(committed).toMatchObject({ nextOffset: "4", created: 3 })
      const sql = yield* SqlClient
      const rows = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where id = any(${ids}::uuid[])`
      expect(rows[0]!.n).toBe(4)
    }).pipe(
      Effect.scoped,
      Effect.provide(Taskfiber.services([Echo]).pipe(Layer.provideMerge(Database.layerUrl(Redacted.make(url.toString()), { poolMax: 5, poolMin: 0 }))))
    )
  }).pipe(Effect.scoped), 90_000)
