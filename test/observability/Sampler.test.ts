/**
 * The sampler against a real database: tasks written in every state the depth
 * gauge counts, aged by the database clock; leases expired, dead letters, the
 * outbox; and a queue that empties reads 0 afterwards, not its last depth.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Metric } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as HealthPolicy from "../../src/domain/HealthPolicy.ts"
import type { QueueDepth } from "../../src/domain/HealthPolicy.ts"
import * as Sampler from "../../src/observability/Sampler.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const Live = Sampler.layer({ interval: Duration.hours(1) }).pipe(Layer.provideMerge(TestDatabase.layer({ poolMax: 4, poolMin: 0 })))

/** `n` tasks of `queue` at `priority`, due `dueInSeconds` from now (negative: overdue), queued. */
const insert = (queue: string, priority: number, n: number, dueInSeconds = 0) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ id: string }>`
      insert into taskfiber.tasks (queue, type, priority, run_at)
      select ${queue}, 'echo', ${priority}, now() + make_interval(secs => ${dueInSeconds}) from generate_series(1, ${n})
      returning id`.pipe(Effect.map((rows) => rows.map((r) => r.id))))

/** Moves `ids` to running (leased for `leaseSeconds`, negative: expired). */
const run = (ids: ReadonlyArray<string>, leaseSeconds = 30) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`update taskfiber.tasks set status = 'running', worker_id = 'w-test', attempt = attempt + 1,
               lease_expires_at = now() + make_interval(secs => ${leaseSeconds})
         where id = any(${ids}::uuid[])`)

const settle = (ids: ReadonlyArray<string>, status: "retrying" | "failed" | "succeeded", runInSeconds = 0) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`update taskfiber.tasks set status = ${status}::taskfiber.task_status, lease_expires_at = null,
               run_at = case when ${status} = 'retrying' then now() + make_interval(secs => ${runInSeconds}) else run_at end,
               last_error = '{"tag":"Boom","message":"boom","classification":"permanent"}'
         where id = any(${ids}::uuid[])`)

const reset = Effect.flatMap(SqlClient, (sql) => sql`truncate taskfiber.tasks, taskfiber.task_events, taskfiber.dead_letters, taskfiber.outbox`)

const depthOf = (depth: ReadonlyArray<QueueDepth>, queue: string) =>
  depth.filter((d) => d.queue === queue).map((d) => [d.status, d.band, d.tasks, d.ready]).sort()

const gauge = (g: Metric.Gauge<number>, attributes: Record<string, string> = {}) =>
  Effect.map(Metric.value(Object.keys(attributes).length === 0 ? g : Metric.withAttributes(g, attributes)), (s) => s.value)

it.layer(Live, { timeout: 60_000, excludeTestServices: true })("Sampler", (it) => {
  it.effect("counts tasks by queue, status and priority band; the oldest ready task's age is by the database clock", () =>
    Effect.gen(function*() {
      yield* reset
      const sampler = yield* Sampler.Sampler
      yield* insert("mail", 0, 3, -90) // ready for 90 s
      yield* insert("mail", 5, 2) // high, ready now
      yield* insert("mail", -3, 1, 3600) // low, due in an hour: waiting, not ready
      const running = yield* insert("mail", 0, 2)
      yield* run(running)
      const retried = yield* insert("video", -1, 2)
      yield* run(retried)
      yield* settle(retried, "retrying", 600)

      const { sample, sampledAt } = yield* sampler.sampleNow
      expect(depthOf(sample.depth, "mail")).toEqual([
        ["queued", "high", 2, 2],
        ["queued", "low", 1, 0],
        ["queued", "normal", 3, 3],
        ["running", "normal", 2, 0]
      ])
      expect(depthOf(sample.depth, "video")).toEqual([["retrying", "low", 2, 0]])
      const oldest = sample.oldestReady.find((o) => o.queue === "mail")!.ageMs
      expect(oldest).toBeGreaterThanOrEqual(90_000)
      expect(oldest).toBeLessThan(100_000)
      expect(sample.oldestReady.some((o) => o.queue === "video")).toBe(false)
      // The database's clock stamped it.
      const [now] = yield* Effect.flatMap(SqlClient, (sql) => sql<{ now: Date }>`select now() as now`)
      expect(Math.abs(now!.now.getTime() - sampledAt.getTime())).toBeLessThan(10_000)

      expect(yield* gauge(Sampler.gauges.queueDepth, { queue: "mail", status: "queued", priority_band: "normal" })).toBe(3)
      expect(yield* gauge(Sampler.gauges.queueDepth, { queue: "video", status: "retrying", priority_band: "low" })).toBe(2)
      expect(yield* gauge(Sampler.gauges.tasksRunning)).toBe(2)
      expect(yield* gauge(Sampler.gauges.oldestReadyAge, { queue: "mail" })).toBeGreaterThanOrEqual(90)
    }))

  it.effect("names the paused queues: their tasks are in the gauges, not in health's ready depth", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const sampler = yield* Sampler.Sampler
      yield* insert("held", 0, 4, -600) // ready for 10 minutes, in a paused queue
      yield* insert("mail", 0, 1)
      yield* sql`select taskfiber.pause_queue('held', 'test')`
      yield* Effect.addFinalizer(() => sql`select taskfiber.resume_queue('held')`.pipe(Effect.orDie))
      const { sample } = yield* sampler.sampleNow
      expect(sample.pausedQueues).toEqual(["held"])
      expect(depthOf(sample.depth, "held")).toEqual([["queued", "normal", 4, 4]])
      expect(yield* gauge(Sampler.gauges.queueDepth, { queue: "held", status: "queued", priority_band: "normal" })).toBe(4)
      const report = HealthPolicy.assess(sample)
      const ready = report.findings.find((f) => f.check === "ready_depth")!
      expect(ready).toMatchObject({ status: "HEALTHY", value: 1 })
      expect(ready.message).toBe('1 tasks ready to run (most in queue "mail": 1); 4 more wait in paused queue "held" (taskfiber resume <queue>)')
      // Ten minutes of waiting in the paused queue is no alarm.
      expect(report.findings.find((f) => f.check === "oldest_ready")!.status).toBe("HEALTHY")
    }).pipe(Effect.scoped))

  it.effect("expired leases, dead letters of the last hour and the outbox backlog", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const sampler = yield* Sampler.Sampler
      const stalled = yield* insert("q", 0, 3)
      yield* run(stalled.slice(0, 2), -60) // two leases expired a minute ago
      yield* run(stalled.slice(2), 60)
      const failing = yield* insert("q", 0, 2)
      yield* run(failing)
      yield* settle(failing, "failed") // two dead letters now, by the history trigger
      yield* sql`insert into taskfiber.dead_letters (source, reason) values ('kafka', 'not JSON')`
      yield* sql`insert into taskfiber.dead_letters (source, reason, created_at) values ('kafka', 'old', now() - interval '61 minutes')`
      yield* sql`insert into taskfiber.outbox (topic, payload) select 'status', '{}' from generate_series(1, 4)`
      yield* sql`insert into taskfiber.outbox (topic, payload, published_at) values ('status', '{}', now())`

      const { sample } = yield* sampler.sampleNow
      expect(sample.expiredLeases).toBe(2)
      expect(sample.deadLettersLastHour).toBe(3)
      expect(sample.outboxBacklog).toBe(4)
      expect(sample.server.maxConnections).toBeGreaterThan(0)
      // This test's pool and the sampler's own connection at least.
      expect(sample.server.connections).toBeGreaterThanOrEqual(2)
      expect(sample.pool).toMatchObject({ max: 4, probe: { _tag: "Answered" } })
      expect(yield* gauge(Sampler.gauges.expiredLeases)).toBe(2)
      expect(yield* gauge(Sampler.gauges.deadLetters)).toBe(3)
      expect(yield* gauge(Sampler.gauges.outboxBacklog)).toBe(4)
      expect(yield* gauge(Sampler.gauges.poolConnectionsMax)).toBe(4)
    }))

  it.effect("a series that emptied reads 0, not its last value", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const sampler = yield* Sampler.Sampler
      yield* insert("drain", 0, 5, -10)
      yield* sampler.sampleNow
      const series = { queue: "drain", status: "queued", priority_band: "normal" }
      expect(yield* gauge(Sampler.gauges.queueDepth, series)).toBe(5)
      expect(yield* gauge(Sampler.gauges.oldestReadyAge, { queue: "drain" })).toBeGreaterThanOrEqual(10)
      yield* sql`update taskfiber.tasks set status = 'cancelled' where queue = 'drain'`
      const { sample } = yield* sampler.sampleNow
      expect(depthOf(sample.depth, "drain")).toEqual([])
      expect(yield* gauge(Sampler.gauges.queueDepth, series)).toBe(0)
      expect(yield* gauge(Sampler.gauges.oldestReadyAge, { queue: "drain" })).toBe(0)
    }))

  it.effect("the sampler reads on a connection of its own, named for it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* (yield* Sampler.Sampler).sampleNow
      const rows = yield* sql<{ n: number }>`
        select count(*)::int as n from pg_stat_activity where application_name = ${Sampler.applicationName} and datname = current_database()`
      expect(rows[0]!.n).toBe(1)
    }))
})
