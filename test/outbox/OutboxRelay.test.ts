/**
 * The status relay with the real kafkajs client against the Kafka test broker and a
 * real database: a task's status events reach the topic keyed by its id, in order,
 * with their headers; two relays at once publish each event once; a crash between
 * the publish and the mark publishes again (at least once, never lost). Every wait
 * is on a consumed message, bounded.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Kafka, logLevel, type Producer } from "kafkajs"
import { RuntimeEvents } from "../../src/observability/RuntimeEvents.ts"
import * as OutboxRelay from "../../src/outbox/OutboxRelay.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { transaction } from "../../src/store/Transaction.ts"
import { KafkaTestBroker } from "../support/kafka/KafkaTestBroker.ts"
import * as Runtime from "../support/Runtime.ts"

const Echo = Job.define({ name: "echo", payload: Schema.Struct({ n: Schema.Number }), run: (p) => Effect.succeed(p) })

interface Received {
  readonly partition: number
  readonly key: string
  readonly headers: Record<string, string>
  readonly body: { readonly taskId: string; readonly to: string; readonly attempt: number; readonly result?: unknown }
}

const producerOf = (broker: KafkaTestBroker) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const p = new Kafka({ clientId: `relay-${Math.random()}`, brokers: broker.brokers, logLevel: logLevel.NOTHING }).producer()
      await p.connect()
      return p
    }),
    (p) => Effect.promise(() => p.disconnect())
  )

/** A consumer of the status topic; `until(pred)` resolves once the messages so far satisfy it. */
const statusConsumer = (broker: KafkaTestBroker, groupId: string) =>
  Effect.gen(function*() {
    const received: Array<Received> = []
    let waiters: Array<() => void> = []
    const consumer = new Kafka({ clientId: groupId, brokers: broker.brokers, logLevel: logLevel.NOTHING }).consumer({
      groupId, sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 200
    })
    yield* Effect.acquireRelease(Effect.promise(() => consumer.connect()), () => Effect.promise(() => consumer.disconnect()))
    yield* Effect.promise(() => consumer.subscribe({ topic: "task-status", fromBeginning: true }))
    yield* Effect.promise(() =>
      consumer.run({
        eachMessage: async ({ message, partition }) => {
          const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]))
          received.push({ partition, key: String(message.key), headers, body: JSON.parse(String(message.value)) })
          const ws = waiters
          waiters = []
          for (const w of ws) w()
        }
      })
    )
    const until = (what: string, done: (rs: ReadonlyArray<Received>) => boolean) =>
      Effect.callback<void>((resume) => {
        const check = () => (done(received) ? resume(Effect.void) : waiters.push(check))
        check()
      }).pipe(Effect.timeoutOrElse({ duration: Duration.seconds(30), orElse: () => Effect.die(new Error(`timed out waiting for ${what}: ${JSON.stringify(received)}`)) }))
    return { received, until }
  })

const settledEvents = (rs: ReadonlyArray<Received>, ids: ReadonlyArray<string>) =>
  ids.every((id) => rs.some((r) => r.key === id && r.body.to === "succeeded"))

it.layer(Runtime.layer([Echo]), { timeout: 120_000, excludeTestServices: true })("OutboxRelay", (it) => {
  it.effect("a task's events reach the topic keyed by its id, in order, with their headers and its result", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("task-status", 3)
      const producer = yield* producerOf(broker)
      const events = yield* RuntimeEvents
      let published = 0
      const allPublished = yield* Deferred.make<void>()
      yield* events.subscribe(["RelayPublished"], (e) => {
        if (e._tag === "RelayPublished" && (published += e.count) >= 9) Deferred.doneUnsafe(allPublished, Exit.void)
      })
      yield* Layer.build(OutboxRelay.layer("task-status", producer))
      const consumer = yield* statusConsumer(broker, "status-1")
      const ids = yield* Effect.forEach([1, 2, 3], (n) => Effect.map(Tasks.enqueue(Echo, { n }), (r) => r.id))
      yield* consumer.until("three succeeded events", (rs) => settledEvents(rs, ids))
      // Published and marked: the rounds' transactions committed.
      yield* Deferred.await(allPublished).pipe(Effect.timeout(Duration.seconds(30)))
      for (const [i, id] of ids.entries()) {
        const mine = consumer.received.filter((r) => r.key === id)
        expect(mine.map((r) => r.body.to)).toEqual(["queued", "running", "succeeded"])
        expect(new Set(mine.map((r) => r.partition)).size).toBe(1)
        expect(mine[2]!.headers).toMatchObject({ "task-id": id, status: "succeeded", attempt: "1" })
        expect(mine[2]!.body).toMatchObject({ taskId: id, result: { n: i + 1 } })
      }
      const sql = yield* SqlClient
      const left = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.outbox where published_at is null`
      expect(left[0]!.n).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("two relays at once publish each event once, in order per task", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("task-status", 2)
      yield* Layer.build(OutboxRelay.layer("task-status", yield* producerOf(broker)))
      yield* Layer.build(OutboxRelay.layer("task-status", yield* producerOf(broker)))
      const consumer = yield* statusConsumer(broker, "status-2")
      const ids = yield* Effect.forEach(Array.from({ length: 20 }, (_, n) => n), (n) => Effect.map(Tasks.enqueue(Echo, { n }), (r) => r.id))
      yield* consumer.until("twenty succeeded events", (rs) => settledEvents(rs, ids))
      for (const id of ids) {
        expect(consumer.received.filter((r) => r.key === id).map((r) => r.body.to)).toEqual(["queued", "running", "succeeded"])
      }
    }).pipe(Effect.scoped))

  it.effect("a crash between the publish and the mark publishes the events again: at least once, never lost", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("task-status", 1)
      const producer: Producer = yield* producerOf(broker)
      const sql = yield* SqlClient
      yield* sql`update taskfiber.settings set outbox_topic = 'task-status'`
      // No relay running: the rounds are driven by hand.
      const consumer = yield* statusConsumer(broker, "status-3")
      // Due in an hour: its one event is "queued", and no run adds more meanwhile.
      const { id } = yield* Tasks.enqueue(Echo, { n: 9 }, { delayMs: 3_600_000 })
      // The round publishes, and its transaction is rolled back before it commits.
      const crashed = yield* Effect.exit(transaction(Effect.andThen(OutboxRelay.round(producer), Effect.fail("crash before the commit"))))
      expect(Exit.isFailure(crashed)).toBe(true)
      yield* consumer.until("the event once", (rs) => rs.filter((r) => r.key === id).length >= 1)
      const unpublished = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.outbox where published_at is null and key = ${id}`
      expect(unpublished[0]!.n).toBe(1)
      yield* OutboxRelay.round(producer)
      yield* consumer.until("the event again", (rs) => rs.filter((r) => r.key === id && r.body.to === "queued").length >= 2)
      const after = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.outbox where published_at is null and key = ${id}`
      expect(after[0]!.n).toBe(0)
      // Consumers dedupe on (task id, status, attempt).
      const mine = consumer.received.filter((r) => r.key === id)
      expect(mine).toHaveLength(2)
      expect(new Set(mine.map((r) => `${r.headers["task-id"]}/${r.headers.status}/${r.headers.attempt}`))).toEqual(new Set([`${id}/queued/0`]))
      yield* sql`update taskfiber.settings set outbox_topic = null`
    }).pipe(Effect.scoped))

  it.effect("a broker restart while events wait: the relay sends again what was not acknowledged", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("task-status", 1)
      yield* Layer.build(OutboxRelay.layer("task-status", yield* producerOf(broker)))
      const consumer = yield* statusConsumer(broker, "status-4")
      const before = yield* Tasks.enqueue(Echo, { n: 1 }, { delayMs: 3_600_000 })
      yield* consumer.until("the first event", (rs) => rs.some((r) => r.key === before.id))
      yield* Effect.promise(() => broker.stop())
      // Written while the broker is down: its rounds fail and roll back.
      const during = yield* Effect.forEach([2, 3], (n) => Effect.map(Tasks.enqueue(Echo, { n }, { delayMs: 3_600_000 }), (r) => r.id))
      yield* Effect.promise(() => broker.restart())
      yield* consumer.until("the events written while it was down", (rs) => during.every((id) => rs.some((r) => r.key === id && r.body.to === "queued")))
    }).pipe(Effect.scoped))
})
