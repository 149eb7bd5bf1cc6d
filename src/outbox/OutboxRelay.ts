/**
 * The status outbox relay: every task transition writes a status event into
 * `taskfiber.outbox` in its own transaction (while the outbox is on); this loop
 * publishes them to `KAFKA_STATUS_TOPIC`, keyed by task id (one task's events stay
 * in one partition, in order), with headers `task-id`, `status`, `attempt` and, when
 * the task has one, `traceparent` (its run's span for an outcome, else its
 * enqueue's; with a tracing backend, the event's own produce span); the body is the event's JSON (the task's public
 * fields, its result on success, its error on failure).
 *
 * One round, in one transaction (schema/functions/outbox.sql): take the oldest
 * unpublished events (locked; one relay at a time across instances, by an advisory
 * lock, so that the order holds), publish them with acks -1, mark them published.
 * A crash between the publish and the mark rolls the mark back: the events are
 * published again by the next round — at least once, never lost. Consumers dedupe
 * on (task id, status, attempt).
 *
 * The loop wakes when events are written (LISTEN taskfiber_outbox), and checks every
 * 30 s besides (a notification sent while it reconnected is gone).
 */
import { Clock, Data, Duration, Effect, Layer, Option, Queue, Schedule, Tracer } from "effect"
import * as TraceContext from "../domain/TraceContext.ts"
import { tracingIn } from "../observability/Tracing.ts"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import type { Producer } from "kafkajs"
import * as KafkaIngress from "../ingress/kafka/KafkaIngress.ts"
import type { KafkaConfig } from "../ingress/kafka/KafkaConfig.ts"
import { RuntimeEvents } from "../observability/RuntimeEvents.ts"
import * as BackgroundLoop from "../runtime/BackgroundLoop.ts"
import { mapSqlError } from "../store/DatabaseError.ts"
import { transaction } from "../store/Transaction.ts"

/** The relay's channel (schema/functions/outbox.sql). */
export const channel = "taskfiber_outbox"

/** Events published per round. */
const batchSize = 500

/** How long published rows are kept before they are pruned. */
const keepMs = 60_000

/** The re-check when no notification came. */
const recheck = Duration.seconds(30)

interface OutboxRow {
  readonly id: string
  readonly topic: string
  readonly key: string | null
  readonly payload: { readonly to?: string; readonly attempt?: number } & Record<string, unknown>
  readonly headers: Record<string, string> | null
}

/** The Kafka message of one event. */
export const messageOf = (row: OutboxRow) => ({
  key: row.key,
  value: JSON.stringify(row.payload),
  headers: {
    ...(row.headers ?? {}),
    ...(row.key === null ? {} : { "task-id": row.key }),
    ...(row.payload.to === undefined ? {} : { status: String(row.payload.to) }),
    ...(row.payload.attempt === undefined ? {} : { attempt: String(row.payload.attempt) })
  }
})

/** One round (see module doc): how many events it published (told as RelayPublished once committed). */
export const round = (producer: Producer) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const events = yield* RuntimeEvents
    const published = yield* transaction(Effect.gen(function*() {
      const rows = yield* sql<OutboxRow>`select id::text, topic, key, payload, headers from taskfiber.outbox_take(${batchSize})`
      if (rows.length === 0) return 0
      const byTopic = new Map<string, Array<OutboxRow>>()
      for (const row of rows) {
        const list = byTopic.get(row.topic)
        if (list === undefined) byTopic.set(row.topic, [row])
        else list.push(row)
      }
      // With a tracing backend, each event that carries a trace gets its produce
      // span (a child of the run whose outcome it tells), and the message carries
      // that span onwards: a consumer of the status topic continues below it.
      const spans = new Map<OutboxRow, Tracer.Span>()
      if (tracingIn(yield* Effect.context<never>())) {
        for (const row of rows) {
          const parent = TraceContext.parse(row.headers?.traceparent)
          if (parent === undefined) continue
          spans.set(row, yield* Effect.makeSpan(`taskfiber.publish ${row.topic}`, {
            parent: Tracer.externalSpan(parent),
            kind: "producer",
            attributes: { "messaging.system": "kafka", "messaging.destination.name": row.topic, "taskfiber.task_id": row.key, "taskfiber.status": row.payload.to }
          }))
        }
      }
      const message = (row: OutboxRow) => {
        const m = messageOf(row)
        const span = spans.get(row)
        return span === undefined ? m : { ...m, headers: { ...m.headers, traceparent: TraceContext.format(span) } }
      }
      const sent = yield* Effect.exit(Effect.tryPromise({
        try: () => producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, rs]) => ({ topic, messages: rs.map(message) })) }),
        catch: (cause) => new OutboxPublishFailed({ cause })
      }))
      if (spans.size > 0) {
        const now = yield* Clock.currentTimeNanos
        for (const span of spans.values()) span.end(now, sent)
      }
      yield* sent
      yield* sql`select taskfiber.outbox_published(${rows.map((r) => r.id)}::bigint[], ${keepMs})`.pipe(mapSqlError)
      return rows.length
    }))
    if (published > 0 && events.observed("RelayPublished")) events.emit({ _tag: "RelayPublished", count: published })
    return published
  }).pipe(Effect.withSpan("OutboxRelay.round"))

/** The broker did not acknowledge a round's events (they stay unpublished). */
export class OutboxPublishFailed extends Data.TaggedError("OutboxPublishFailed")<{ readonly cause: unknown }> {
  override get message(): string {
    return `status events not published: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/**
 * The relay for the scope's lifetime: sets the outbox's topic (transitions write
 * events from now on), then publishes through `producer` until the scope closes.
 */
export const layer = (topic: string, producer: Producer): Layer.Layer<never, never, SqlClient | PgClient.PgClient | RuntimeEvents> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const sql = yield* SqlClient
    const pg = yield* PgClient.PgClient
    yield* sql`update taskfiber.settings set outbox_topic = ${topic}`.pipe(Effect.orDie)
    const wake = yield* Queue.sliding<void>(1)
    // The wake-ups: a listener held for the scope, listening again after a failure.
    yield* Effect.forkScoped(
      Effect.scoped(Effect.gen(function*() {
        const notifications = yield* pg.listen(channel)
        Queue.offerUnsafe(wake, undefined)
        return yield* Effect.forever(Effect.andThen(Queue.take(notifications), Queue.offer(wake, undefined)))
      })).pipe(Effect.retry(Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("10 seconds")])), Effect.ignore)
    )
    // A full round goes again at once; a short one waits for the next wake-up.
    const step = Effect.gen(function*() {
      while ((yield* round(producer)) === batchSize) {
        // go on
      }
      yield* Queue.take(wake).pipe(Effect.timeoutOption(recheck))
    })
    yield* Effect.forkScoped(BackgroundLoop.run("outbox relay", step))
  }))

/**
 * The relay of the Kafka settings: to `KAFKA_STATUS_TOPIC` through a producer of
 * its own (acks -1 on every send); with no status topic, the outbox is turned off
 * (no events written, none left to pile up).
 */
export const layerFor = (config: KafkaConfig): Layer.Layer<never, KafkaIngress.KafkaUnavailable, SqlClient | PgClient.PgClient | RuntimeEvents> =>
  Option.match(config.statusTopic, {
    onNone: () =>
      Layer.effectDiscard(Effect.flatMap(SqlClient, (sql) => sql`update taskfiber.settings set outbox_topic = null`.pipe(Effect.orDie))),
    onSome: (topic) =>
      Layer.unwrap(Effect.gen(function*() {
        const producer = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: async () => {
              const p = KafkaIngress.client(config).producer({ allowAutoTopicCreation: true })
              await p.connect()
              return p
            },
            catch: (cause) => new KafkaIngress.KafkaUnavailable({ brokers: config.brokers, cause })
          }),
          (p) => Effect.promise(() => p.disconnect()).pipe(Effect.ignore)
        )
        return layer(topic, producer)
      }))
  })
