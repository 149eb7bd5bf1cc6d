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
import * as TestDatabase from "../../support/TestDatabase.ts"
import * as Database from "../../../src/store/Database.ts"
import * as Taskfiber from "../../../src/Taskfiber.ts"

const Echo = Job.define({ name: "echo", payload: Schema.Struct({ n: Schema.Number }), run: (p) => Effect.succeed(p) })
const Park = Job.define({
  name: "park",
  payload: Schema.Struct({}),
  run: () => Effect.never
})

const configFor = (broker: KafkaTestBroker, groupId: string, clientId = "taskfiber-test"): KafkaConfig => ({
  brokers: broker.brokers,
  clientId,
  topics: ["tasks"],
  groupId,
  statusTopic: Option.none(),
  partitionsConcurrently: 2,
  maxMessageBytes: 1000,
  memberTimeoutMs: 6000,
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

  it.effect("a consumer gone after the batch was written, before its offset commit: the redelivery finds the tasks, none runs twice", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 1)
      const refused = broker.refuseOffsetCommits("g-lost-commit", 1)
      const batches = yield* committedBatches
      const outcomes = yield* (yield* Supervisor.Supervisor).outcomes
      const first = yield* Scope.make()
      yield* Layer.buildWithScope(KafkaIngress.layer(configFor(broker, "g-lost-commit")), first)
      const producer = yield* producerOf(broker)
      const ids = [newTaskId(), newTaskId(), newTaskId()]
      yield* send(producer, ids.map((id, n) => ({ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ n }) })))
      // Written and run; its offset commit never landed. Then that consumer is gone.
      yield* Effect.promise(() => refused)
      const settled = new Set<string>()
      while (!ids.every((id) => settled.has(id))) settled.add((yield* Queue.take(outcomes)).taskId)
      yield* Scope.close(first, Exit.void)
      // The next consumer of the group gets the batch again, and finds it written.
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-lost-commit")))
      const [again] = yield* untilCommitted(batches, 3)
      expect(again).toMatchObject({ messages: 3, created: 0, existing: 3, nextOffset: "3" })
      const sql = yield* SqlClient
      const runs = yield* sql<{ task_id: string; n: number }>`
        select task_id::text, count(*)::int as n from taskfiber.task_events
         where task_id = any(${ids}::uuid[]) and to_status = 'running' group by task_id`
      expect(runs.map((r) => r.n)).toEqual([1, 1, 1])
    }).pipe(Effect.scoped))

  it.effect("poison messages of every kind between good ones: all dead letters with their reasons, the good ones run", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 1)
      const batches = yield* committedBatches
      const outcomes = yield* (yield* Supervisor.Supervisor).outcomes
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-poison")))
      const producer = yield* producerOf(broker)
      const good = [newTaskId(), newTaskId()]
      const poison: ReadonlyArray<readonly [Record<string, string>, string | null, RegExp]> = [
        [{ "task-id": newTaskId(), "task-type": "echo" }, "{nope", /not JSON/],
        [{ "task-type": "echo" }, "{}", /"task-id" is missing/],
        [{ "task-id": "42", "task-type": "echo" }, "{}", /"task-id" is not a UUID/],
        [{ "task-id": newTaskId() }, "{}", /"task-type" is missing/],
        [{ "task-id": newTaskId(), "task-type": "nope" }, "{}", /no handler is registered for task type "nope"/],
        [{ "task-id": newTaskId(), "task-type": "echo" }, JSON.stringify({ n: "one" }), /invalid payload for task type "echo" at n/],
        [{ "task-id": newTaskId(), "task-type": "echo", priority: "high" }, JSON.stringify({ n: 1 }), /"priority" is not an integer/],
        [{ "task-id": newTaskId(), "task-type": "echo", "run-at": "tomorrow" }, JSON.stringify({ n: 1 }), /"run-at" is not an ISO 8601/],
        [{ "task-id": newTaskId(), command: "pause" }, null, /the only command is "cancel"/],
        [{ "task-id": newTaskId(), "task-type": "echo" }, null, /tombstone/],
        [{ "task-id": newTaskId(), "task-type": "echo" }, "x".repeat(1001), /more than the limit of 1000/]
      ]
      yield* send(producer, [
        { headers: { "task-id": good[0]!, "task-type": "echo" }, value: JSON.stringify({ n: 0 }) },
        ...poison.map(([headers, value]) => ({ headers, value })),
        { headers: { "task-id": good[1]!, "task-type": "echo" }, value: JSON.stringify({ n: 1 }) }
      ])
      const committed = yield* untilCommitted(batches, poison.length + 2)
      expect(committed.reduce((n, b) => n + b.deadLettered, 0)).toBe(poison.length)
      expect(committed[committed.length - 1]!.nextOffset).toBe(String(poison.length + 2))
      const settled = new Set<string>()
      while (!good.every((id) => settled.has(id))) settled.add((yield* Queue.take(outcomes)).taskId)
      const sql = yield* SqlClient
      const letters = yield* sql<{ reason: string; kafka_offset: string }>`
        select reason, kafka_offset::text from taskfiber.dead_letters
         where topic = 'tasks' and kafka_offset between 1 and ${poison.length} order by created_at desc, kafka_offset limit ${poison.length}`
      const byOffset = new Map(letters.map((l) => [Number(l.kafka_offset), l.reason]))
      poison.forEach(([, , reason], i) => expect(byOffset.get(i + 1), String(reason)).toMatch(reason))
    }).pipe(Effect.scoped))

  it.effect("a broker restart mid-stream: consumption goes on from the committed offsets, every message a task once", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 2)
      const batches = yield* committedBatches
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-restart")))
      const producer = yield* producerOf(broker)
      const ids = Array.from({ length: 8 }, () => newTaskId())
      yield* send(producer, ids.slice(0, 4).map((id, n) => ({ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ n }), partition: n % 2 })))
      yield* untilCommitted(batches, 4)
      yield* Effect.promise(() => broker.restart())
      yield* send(producer, ids.slice(4).map((id, n) => ({ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ n }), partition: n % 2 })))
      const after = yield* untilCommitted(batches, 4)
      // Nothing before the committed offsets came again (a batch whose commit was
      // cut by the restart may come again, and finds its tasks).
      expect(after.every((b) => BigInt(b.nextOffset) > 2n)).toBe(true)
      const sql = yield* SqlClient
      const rows = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where id = any(${ids}::uuid[])`
      expect(rows[0]!.n).toBe(8)
    }).pipe(Effect.scoped))

  it.effect("two instances in one group split the partitions; one dies, the other takes its partitions, nothing is lost", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 4)
      const batches = yield* committedBatches
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-two", "instance-a")))
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-two", "instance-b")))
      const producer = yield* producerOf(broker)
      const ids = Array.from({ length: 16 }, () => newTaskId())
      const sendTo = (slice: ReadonlyArray<string>) =>
        send(producer, slice.map((id, n) => ({ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ n }), partition: n % 4 })))
      yield* sendTo(ids.slice(0, 8))
      const before = yield* untilCommitted(batches, 8)
      expect(new Set(before.map((b) => b.partition))).toEqual(new Set([0, 1, 2, 3]))
      // Both members hold partitions.
      const group = broker.state.groups.get("g-two")!
      expect(group.membership).toHaveLength(2)
      expect(group.membership.every((m) => m.assignmentBytes > 0)).toBe(true)
      // Instance a dies: no more heartbeats, no LeaveGroup.
      // (Thawed before the scope closes, so that its consumer can leave.)
      yield* Effect.acquireRelease(Effect.sync(() => broker.freezeClient("instance-a")), (thaw) => Effect.sync(thaw))
      yield* sendTo(ids.slice(8))
      const after = yield* untilCommitted(batches, 8)
      // Instance b committed all four partitions; what a wrote before it died (its
      // commit never landed) b found written.
      expect(new Set(after.map((b) => b.partition))).toEqual(new Set([0, 1, 2, 3]))
      expect(after.reduce((n, b) => n + b.created + b.existing, 0)).toBe(8)
      const sql = yield* SqlClient
      const rows = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where id = any(${ids}::uuid[])`
      expect(rows[0]!.n).toBe(16)
    }).pipe(Effect.scoped))
})

// The database behind a proxy the test cuts: the batch fails, is retried, its
// partition paused and sought back; restored, the partition resumes and every
// message becomes its task, once.
it.live("a database outage pauses the partitions and loses nothing: after it, both resume and every message is a task, once", () =>
  Effect.gen(function*() {
    // The database of this test, reached through a proxy the test controls.
    const { proxy, url } = yield* TestDatabase.scopedDatabaseBehindProxy
    yield* Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 2)
      const events = yield* RuntimeEvents
      const seen = yield* Queue.unbounded<RuntimeEvent>()
      yield* events.subscribe(["IngressPaused", "IngressResumed", "IngressBatchCommitted"], (e) => Queue.offerUnsafe(seen, e))
      const take = (tag: RuntimeEvent["_tag"], n: number) =>
        Effect.gen(function*() {
          const got: Array<RuntimeEvent> = []
          while (got.length < n) {
            const e = yield* Queue.take(seen)
            if (e._tag === tag) got.push(e)
          }
          return got
        }).pipe(Effect.timeout(Duration.seconds(30)))
      yield* Layer.build(KafkaIngress.layer(configFor(broker, "g-outage"), { retryFor: Duration.millis(500) }))
      const producer = yield* producerOf(broker)
      const ids = Array.from({ length: 8 }, () => newTaskId())
      const message = (id: string, n: number) => ({ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ n }), partition: n % 2 })
      // One message into each partition, so that the group is joined and consuming both.
      yield* send(producer, ids.slice(0, 2).map(message))
      yield* take("IngressBatchCommitted", 2)

      yield* proxy.cut
      yield* send(producer, ids.slice(2).map((id, i) => message(id, i)))
      const paused = yield* take("IngressPaused", 2)
      expect(new Set(paused.map((p) => p._tag === "IngressPaused" && `${p.partition}@${p.offset}`))).toEqual(new Set(["0@1", "1@1"]))
      yield* proxy.restore
      // Both partitions resume, and every message waiting in them is written, once.
      yield* take("IngressResumed", 2)
      const committed = yield* take("IngressBatchCommitted", 2)
      expect(committed.map((c) => c._tag === "IngressBatchCommitted" && c.nextOffset)).toEqual(["4", "4"])
      expect(committed.reduce((n, c) => n + (c._tag === "IngressBatchCommitted" ? c.created : 0), 0)).toBe(6)
      const sql = yield* SqlClient
      const rows = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where id = any(${ids}::uuid[])`
      expect(rows[0]!.n).toBe(8)
    }).pipe(
      Effect.scoped,
      Effect.provide(Taskfiber.services([Echo]).pipe(Layer.provideMerge(Database.layerUrl(Redacted.make(url), { poolMax: 5, poolMin: 0 }))))
    )
  }).pipe(Effect.scoped), 90_000)
