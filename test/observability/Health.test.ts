/**
 * Health under real conditions: a pool of two connections held by transactions
 * (exhausted) and given back; a slow statement on the pool; the Kafka ingress
 * over the test broker, which is stopped and restarted. Every wait is on an event
 * (a log line, a runtime event, a Deferred), bounded; the one repeated sample
 * waits for a statement to have run long enough.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Logger, Option, Queue, Schedule, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { HealthStatus } from "../../src/domain/HealthPolicy.ts"
import * as HealthPolicy from "../../src/domain/HealthPolicy.ts"
import type { KafkaConfig } from "../../src/ingress/kafka/KafkaConfig.ts"
import * as KafkaIngress from "../../src/ingress/kafka/KafkaIngress.ts"
import * as Health from "../../src/observability/Health.ts"
import { type RuntimeEvent, RuntimeEvents } from "../../src/observability/RuntimeEvents.ts"
import * as RuntimeEventsModule from "../../src/observability/RuntimeEvents.ts"
import * as Sampler from "../../src/observability/Sampler.ts"
import * as Job from "../../src/runtime/Job.ts"
import { KafkaTestBroker } from "../support/kafka/KafkaTestBroker.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

/** The health log lines, as they are logged. */
const healthLines = Effect.runSync(Queue.unbounded<{ readonly level: string; readonly text: string }>())
const collector = Logger.make(({ logLevel, message }) => {
  const text = String(Array.isArray(message) ? message[0] : message)
  if (text.startsWith("health ")) Queue.offerUnsafe(healthLines, { level: logLevel, text })
})

/**
 * The database server is shared with the other test files, whose connections
 * come and go, and a new database's block counters are its migration's: those two
 * checks would judge the neighbours, not this test.
 */
const quietNeighbours: Partial<HealthPolicy.Thresholds> = {
  serverConnections: { degraded: 100, unhealthy: 100, critical: 100 },
  cacheHit: { degraded: 0, unhealthy: 0, critical: 0 }
}

const finding = (report: HealthPolicy.HealthReport, check: HealthPolicy.Check) => report.findings.find((f) => f.check === check)

const nextHealthLine = Queue.take(healthLines).pipe(Effect.timeout(Duration.seconds(10)))

const PoolOfTwo = Health.layer({
  kafka: false,
  thresholds: quietNeighbours,
  sampler: { interval: Duration.hours(1), probeTimeout: Duration.millis(300) }
}).pipe(
  Layer.provideMerge(Layer.merge(TestDatabase.layer({ poolMax: 2, poolMin: 0 }), RuntimeEventsModule.layer)),
  Layer.provide(Logger.layer([collector]))
)

it.layer(PoolOfTwo, { timeout: 60_000, excludeTestServices: true })("Health of the pool", (it) => {
  it.effect("an exhausted pool is critical with what to change; given back, healthy again; each change logged once", () =>
    Effect.gen(function*() {
      const health = yield* Health.Health
      const sampler = yield* Sampler.Sampler
      const sql = yield* SqlClient
      yield* sampler.sampleNow
      expect((yield* health.report).status).toBe("HEALTHY")

      // Both connections held by transactions that wait.
      const release = yield* Deferred.make<void>()
      const holding = yield* Effect.all([Deferred.make<void>(), Deferred.make<void>()])
      const holders = yield* Effect.forEach(holding, (held) =>
        sql.withTransaction(Effect.andThen(sql`select 1`, Effect.andThen(Deferred.succeed(held, undefined), Deferred.await(release)))).pipe(
          Effect.forkChild
        ))
      yield* Effect.forEach(holding, Deferred.await)

      yield* sampler.sampleNow
      const exhausted = yield* health.report
      expect(exhausted.status).toBe("CRITICAL")
      const pool = finding(exhausted, "pool_usage")!
      expect(pool).toMatchObject({ status: "CRITICAL", value: 100, message: "pool at 100 %: 2 of 2 connections in use, 0 idle" })
      expect(pool.recommendation).toMatch(/raise DB_POOL_MAX \(now 2\) or lower MAX_CONCURRENT_JOBS/)
      expect(finding(exhausted, "pool_probe")).toMatchObject({ status: "CRITICAL", value: 300 })
      expect(exhausted.sampledAt).toBeInstanceOf(Date)
      const worsened = yield* nextHealthLine
      expect(worsened.level).toBe("Warn")
      expect(worsened.text).toMatch(/^health HEALTHY → CRITICAL: .*pool_usage CRITICAL: pool at 100 %/)
      // Sampled again while still exhausted: no second line.
      yield* sampler.sampleNow

      yield* Deferred.succeed(release, undefined)
      yield* Effect.forEach(holders, Fiber.join)
      yield* sampler.sampleNow
      expect((yield* health.report).status).toBe("HEALTHY")
      const recovered = yield* nextHealthLine
      expect(recovered.level).toBe("Info")
      expect(recovered.text).toMatch(/^health CRITICAL → HEALTHY: recovered .*pool_usage/)
      expect(yield* Queue.size(healthLines)).toBe(0)
    }))

  it.effect("a slow statement on the pool shows as query time", () =>
    Effect.gen(function*() {
      const health = yield* Health.Health
      const sampler = yield* Sampler.Sampler
      const sql = yield* SqlClient
      const slow = yield* sql`select pg_sleep(5)`.pipe(Effect.forkChild)
      // Sampled until the statement has run long enough to count (bounded).
      const report = yield* Effect.andThen(sampler.sampleNow, health.report).pipe(
        Effect.repeat({ until: (r) => finding(r, "query_time")!.status !== "HEALTHY", schedule: Schedule.spaced("50 millis") }),
        Effect.timeout(Duration.seconds(4))
      )
      const query = finding(report, "query_time")!
      expect(query.message).toMatch(/^statements take \d+ ms on average \(1 running on the pool, and the probe\)$/)
      expect(query.value).toBeGreaterThanOrEqual(100)
      expect(query.recommendation).toMatch(/slow statements/)
      yield* Fiber.interrupt(slow)
      // Its change of status was logged; the drained queue keeps the next test's lines apart.
      expect((yield* nextHealthLine).level).toBe("Warn")
    }))
})

const Echo = Job.define({ name: "echo", payload: Schema.Struct({}), run: () => Effect.void })

const configFor = (broker: KafkaTestBroker): KafkaConfig => ({
  brokers: broker.brokers,
  clientId: "taskfiber-health-test",
  topics: ["tasks"],
  groupId: "g-health",
  statusTopic: Option.none(),
  partitionsConcurrently: 1,
  maxMessageBytes: 1000,
  memberTimeoutMs: 6000,
  ssl: false,
  sasl: Option.none()
})

const WithKafka = Health.layer({ kafka: true, thresholds: quietNeighbours, sampler: { interval: Duration.hours(1) } }).pipe(
  Layer.provideMerge(Runtime.base([Echo]))
)

/** The first event of `tag` from now on (scoped). */
const nextEvent = <T extends RuntimeEvent["_tag"]>(tag: T) =>
  Effect.gen(function*() {
    const got = yield* Deferred.make<Extract<RuntimeEvent, { _tag: T }>>()
    yield* (yield* RuntimeEvents).subscribe([tag], (e) => {
      Deferred.doneUnsafe(got, Effect.succeed(e as Extract<RuntimeEvent, { _tag: T }>))
    })
    return Deferred.await(got).pipe(Effect.timeout(Duration.seconds(45)))
  })

const kafkaStatus = Effect.map(Effect.flatMap(Health.Health, (h) => h.report), (r) => finding(r, "kafka_connection"))

it.layer(WithKafka, { timeout: 120_000, excludeTestServices: true })("Health of the Kafka consumer", (it) => {
  it.effect("the broker stopped: the consumer's finding is unhealthy; restarted: healthy again", () =>
    Effect.gen(function*() {
      const broker = yield* KafkaTestBroker.scoped()
      broker.createTopic("tasks", 2)
      const joined = yield* nextEvent("IngressJoined")
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(KafkaIngress.layer(configFor(broker)), scope)
      expect((yield* joined).partitions).toHaveLength(2)
      expect(yield* kafkaStatus).toMatchObject({ status: "HEALTHY", message: "the consumer is in its group with 2 partitions" })
      expect(finding(yield* Effect.flatMap(Health.Health, (h) => h.report), "kafka_lag")).toMatchObject({ status: "HEALTHY", value: 0 })

      const disconnected = yield* nextEvent("IngressDisconnected")
      yield* Effect.promise(() => broker.stop())
      yield* disconnected
      const out = (yield* kafkaStatus)!
      expect(out.status satisfies HealthStatus).toBe("UNHEALTHY")
      expect(out.message).toMatch(/^the consumer has not been in its group for \d+ ms/)
      expect(out.recommendation).toMatch(/KAFKA_BROKERS/)

      const rejoined = yield* nextEvent("IngressJoined")
      yield* Effect.promise(() => broker.restart())
      yield* rejoined
      expect((yield* kafkaStatus)!.status).toBe("HEALTHY")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.scoped))
})
