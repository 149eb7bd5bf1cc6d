/**
 * The Kafka ingress: a kafkajs consumer of `KAFKA_TOPICS` in group
 * `KAFKA_GROUP_ID` that turns each fetched batch of a partition into tasks, dead
 * letters and cancels (IngestBatch, one transaction), and only then commits the
 * batch's offset. Partitions are processed concurrently
 * (`KAFKA_PARTITIONS_CONCURRENTLY`); offsets are never committed automatically.
 *
 * - A message becomes a task exactly once in effect: its task id comes from its
 *   header, so a batch delivered again (a crash or a rebalance between the
 *   transaction and the offset commit) finds its tasks and dead letters.
 * - A bad message never blocks its partition and is never lost: it is a dead
 *   letter, written in the same transaction, and its offset committed with the rest.
 * - The database failing: the batch is retried (100 ms doubling to 5 s, for
 *   20 s) with a heartbeat after each failure, so the group membership stays; then
 *   nothing is committed, the partition is paused and sought back to the batch's
 *   first offset, and resumed when the database answers again. Other partitions
 *   keep flowing. The outage is one log line when it begins and one when it ends.
 */
import { Cause, Data, Duration, Effect, Layer, Redacted, Schedule } from "effect"
import { redactSecrets } from "../../domain/Redact.ts"
import type { Context, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { type Consumer, type EachBatchPayload, Kafka, logLevel, type SASLOptions } from "kafkajs"
import { CancelBus } from "../../coordination/CancelBus.ts"
import * as Outages from "../../observability/Outages.ts"
import { RuntimeEvents } from "../../observability/RuntimeEvents.ts"
import { JobRegistry } from "../../runtime/JobRegistry.ts"
import { DeadLetters } from "../../store/DeadLetters.ts"
import { TaskStore } from "../../store/TaskStore.ts"
import * as IngestBatch from "./IngestBatch.ts"
import type { KafkaConfig } from "./KafkaConfig.ts"

/** A kafkajs client from the settings (its own logs off: failures are logged here, once). */
export const client = (config: KafkaConfig): Kafka =>
  new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    ssl: config.ssl,
    ...(config.sasl._tag === "Some"
      ? {
        sasl: {
          mechanism: config.sasl.value.mechanism,
          username: config.sasl.value.username,
          password: Redacted.value(config.sasl.value.password)
        } as SASLOptions
      }
      : {}),
    logLevel: logLevel.NOTHING
  })

/** Kafka could not be reached, or refused the consumer (at start). */
export class KafkaUnavailable extends Data.TaggedError("KafkaUnavailable")<{ readonly brokers: ReadonlyArray<string>; readonly cause: unknown }> {
  override get message(): string {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot use Kafka at ${this.brokers.join(",")} (KAFKA_BROKERS): ${redactSecrets(reason)}`
  }
}

/** The retries of one batch before its partition is paused: 100 ms doubling to 5 s, for `retryFor`. */
const batchRetry = (retryFor: Duration.Duration) =>
  Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("5 seconds")]).pipe(Schedule.upTo({ duration: retryFor }))

/** How the ingress runs, beyond its settings. */
export interface IngressOptions {
  /** How long a failing batch is retried (with heartbeats) before its partition is paused; default 20 s. */
  readonly retryFor?: Duration.Duration
}

/** The probe of a paused partition's database: until `select 1` answers, 100 ms doubling to 5 s. */
const probeRetry = Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("5 seconds")])

type Services = TaskStore | DeadLetters | CancelBus | SqlClient | RuntimeEvents

/** Handles one fetched batch (see module doc). */
const handleBatch = (
  consumer: Consumer,
  registry: JobRegistry["Service"],
  config: KafkaConfig,
  outages: Outages.Tracker,
  retryFor: Duration.Duration,
  scope: Scope.Scope,
  payload: EachBatchPayload
): Effect.Effect<void, never, Services> =>
  Effect.gen(function*() {
    const { batch } = payload
    if (batch.messages.length === 0) return
    const messages = batch.messages.map((m) => ({
      topic: batch.topic,
      partition: batch.partition,
      offset: m.offset,
      timestamp: m.timestamp,
      value: m.value,
      headers: m.headers ?? {}
    }))
    const first = messages[0]!.offset
    const last = messages[messages.length - 1]!.offset
    const heartbeat = Effect.promise(() => payload.heartbeat()).pipe(Effect.ignore)
    const written = yield* IngestBatch.ingest(registry, messages, { maxValueBytes: config.maxMessageBytes }).pipe(
      Effect.tapCause((cause) => Effect.andThen(outages.failed(cause), heartbeat)),
      Effect.retry(batchRetry(retryFor)),
      Effect.exit
    )
    if (written._tag === "Success") {
      yield* outages.recovered
      payload.resolveOffset(last)
      const nextOffset = (BigInt(last) + 1n).toString()
      const committed = yield* Effect.tryPromise(() =>
        consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: nextOffset }])
      ).pipe(Effect.exit)
      if (committed._tag === "Failure") {
        // Written, not committed (a rebalance, a lost session): the batch comes
        // again, to this consumer or another, and finds what it wrote.
        yield* Effect.logWarning("kafka offset not committed; the batch will be delivered again and found written", {
          topic: batch.topic, partition: batch.partition, offset: nextOffset,
          error: redactSecrets(String(Cause.squash(committed.cause)))
        })
        return
      }
      const events = yield* RuntimeEvents
      const { created, existing, deadLettered, cancelled, letters } = written.value
      if (events.observed("IngressBatchCommitted")) {
        events.emit({
          _tag: "IngressBatchCommitted", topic: batch.topic, partition: batch.partition, nextOffset, messages: messages.length,
          created, existing, deadLettered, cancelled,
          lag: Math.max(0, Number(BigInt(batch.highWatermark) - BigInt(nextOffset)))
        })
      }
      if (letters.length > 0 && events.observed("MessageDeadLettered")) {
        for (const l of letters) {
          events.emit({ _tag: "MessageDeadLettered", topic: batch.topic, partition: batch.partition, offset: String(l.offset ?? ""), reason: l.reason })
        }
      }
      return
    }
    if (Cause.hasInterruptsOnly(written.cause)) return
    // Still failing: nothing committed; this partition waits, the others go on.
    const resume = payload.pause()
    consumer.seek({ topic: batch.topic, partition: batch.partition, offset: first })
    const events = yield* RuntimeEvents
    events.emit({ _tag: "IngressPaused", topic: batch.topic, partition: batch.partition, offset: first })
    const sql = yield* SqlClient
    // In the ingress's scope: closed with it, never left probing.
    yield* Effect.forkIn(
      sql`select 1`.pipe(
        Effect.retry(probeRetry),
        Effect.andThen(Effect.sync(() => {
          resume()
          events.emit({ _tag: "IngressResumed", topic: batch.topic, partition: batch.partition })
        }))
      ),
      scope
    )
  }).pipe(Effect.catchCause((cause) => Effect.logError("kafka batch handling failed", cause)))

/**
 * The ingress for the scope's lifetime: connected, subscribed, consuming; on
 * close the consumer leaves its group (the uncommitted rest is redelivered to
 * whoever takes the partitions).
 */
export const layer = (config: KafkaConfig, options: IngressOptions = {}): Layer.Layer<never, KafkaUnavailable, Services | JobRegistry> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const registry = yield* JobRegistry
    const scope = yield* Effect.scope
    const context: Context.Context<Services> = yield* Effect.context<Services>()
    const run = Effect.runPromiseWith(context)
    const consumer = client(config).consumer({
      groupId: config.groupId,
      sessionTimeout: config.memberTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(config.memberTimeoutMs / 10)),
      // As kafkajs and Kafka's own default: a topic named in KAFKA_TOPICS that does
      // not exist yet is made (where the brokers allow it; else the start says so).
      allowAutoTopicCreation: true
    })
    const outages = Outages.make("kafka ingress")
    const unavailable = (cause: unknown) => new KafkaUnavailable({ brokers: config.brokers, cause })
    yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => consumer.connect(), catch: unavailable }),
      () => Effect.promise(() => consumer.disconnect()).pipe(Effect.ignore)
    )
    // Membership, for health and readiness: kafkajs tells joins and crashes on its
    // instrumentation events (a crash it retries restarts the consumer, which joins again).
    const events = yield* RuntimeEvents
    const removers = [
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const assignment = e.payload.memberAssignment as Record<string, ReadonlyArray<number>>
        events.emit({
          _tag: "IngressJoined",
          groupId: e.payload.groupId,
          partitions: Object.entries(assignment).flatMap(([topic, ps]) => ps.map((partition) => ({ topic, partition })))
        })
      }),
      consumer.on(consumer.events.CRASH, (e) => {
        events.emit({ _tag: "IngressDisconnected", reason: redactSecrets(String(e.payload.error?.message ?? e.payload.error)) })
      }),
      consumer.on(consumer.events.DISCONNECT, () => {
        events.emit({ _tag: "IngressDisconnected", reason: "disconnected from the brokers" })
      })
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => removers.forEach((remove) => remove())))
    yield* Effect.tryPromise({ try: () => consumer.subscribe({ topics: [...config.topics], fromBeginning: true }), catch: unavailable })
    yield* Effect.tryPromise({ try: () =>
      consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: config.partitionsConcurrently,
        eachBatch: (payload) => run(handleBatch(consumer, registry, config, outages, options.retryFor ?? Duration.seconds(20), scope, payload))
      }), catch: unavailable })
    yield* Effect.logInfo("kafka ingress consuming", { topics: config.topics, groupId: config.groupId, brokers: config.brokers })
  }))
