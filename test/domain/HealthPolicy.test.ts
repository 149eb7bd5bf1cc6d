import { describe, expect, it } from "@effect/vitest"
import { Duration, Schema } from "effect"
import * as DurationText from "../../src/domain/DurationText.ts"
import * as HealthPolicy from "../../src/domain/HealthPolicy.ts"
import type { HealthSample, Levels, Thresholds } from "../../src/domain/HealthPolicy.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/** Every measured number of a sample, flat, so that one can be made worse. */
const Numbers = Schema.Struct({
  poolOn: Schema.Boolean,
  poolInUse: int(0, 60),
  poolIdle: int(0, 60),
  poolMax: int(1, 60),
  // An answer comes within the probe's timeout (2000 ms below).
  probeMs: int(0, 2000),
  probeTimedOut: Schema.Boolean,
  activeStatements: int(0, 20),
  activeMeanMs: int(0, 3000),
  cacheHits: int(0, 100_000),
  cacheReads: int(0, 100_000),
  connections: int(0, 600),
  maxConnections: int(1, 600),
  ready: int(0, 200_000),
  oldestMs: int(0, 2_000_000),
  expired: int(0, 200),
  dead: int(0, 200),
  outbox: int(0, 200_000),
  kafkaOn: Schema.Boolean,
  joined: Schema.Boolean,
  lag: int(0, 200_000),
  disconnectedMs: int(0, 1_000_000),
  ageMs: int(0, 200_000),
  intervalMs: int(1_000, 20_000),
  lastError: Schema.Boolean
})
type Numbers = typeof Numbers.Type

const sampleOf = (n: Numbers): HealthSample => ({
  depth: n.ready === 0 ? [] : [{ queue: "default", status: "queued", band: "normal", tasks: n.ready, ready: n.ready }],
  oldestReady: n.ready === 0 ? [] : [{ queue: "default", ageMs: n.oldestMs }],
  expiredLeases: n.expired,
  deadLettersLastHour: n.dead,
  outboxBacklog: n.outbox,
  cache: { hits: n.cacheHits, reads: n.cacheReads },
  server: { connections: n.connections, maxConnections: n.maxConnections },
  ...(n.poolOn
    ? {
      pool: {
        inUse: n.poolInUse,
        idle: n.poolIdle,
        max: n.poolMax,
        probe: n.probeTimedOut ? { _tag: "TimedOut", timeoutMs: 2000 } : { _tag: "Answered", ms: n.probeMs },
        active: { statements: n.activeStatements, meanMs: n.activeMeanMs }
      }
    }
    : {}),
  ...(n.kafkaOn ? { kafka: { joined: n.joined, partitions: 3, lag: n.lag, disconnectedMs: n.joined ? 0 : n.disconnectedMs } } : {}),
  age: { ms: n.ageMs, intervalMs: n.intervalMs, ...(n.lastError ? { lastError: "connect ECONNREFUSED" } : {}) }
})

/** Each way one measured value can get worse, by `d` (>= 1). */
const worsen: ReadonlyArray<(n: Numbers, d: number) => Numbers> = [
  (n, d) => ({ ...n, poolInUse: n.poolInUse + d }),
  (n, d) => ({ ...n, probeMs: n.probeMs + d }),
  (n) => ({ ...n, probeTimedOut: true }),
  (n, d) => ({ ...n, activeMeanMs: n.activeMeanMs + d }),
  // The same accesses, more of them from disk.
  (n, d) => ({ ...n, cacheHits: n.cacheHits - Math.min(d, n.cacheHits), cacheReads: n.cacheReads + Math.min(d, n.cacheHits) }),
  (n, d) => ({ ...n, connections: n.connections + d }),
  (n, d) => ({ ...n, ready: n.ready + d }),
  (n, d) => ({ ...n, oldestMs: n.oldestMs + d }),
  (n, d) => ({ ...n, expired: n.expired + d }),
  (n, d) => ({ ...n, dead: n.dead + d }),
  (n, d) => ({ ...n, outbox: n.outbox + d }),
  (n, d) => ({ ...n, lag: n.lag + d }),
  (n) => ({ ...n, joined: false }),
  (n, d) => ({ ...n, disconnectedMs: n.disconnectedMs + d }),
  (n, d) => ({ ...n, ageMs: n.ageMs + d }),
  (n) => ({ ...n, lastError: true })
]

/** Thresholds from three raw numbers per check, put in the check's order. */
const Raw = Schema.Tuple([int(0, 100), int(0, 100), int(0, 100)])
const levelsFrom = (raw: ReadonlyArray<number>, scale: number, lowerIsWorse = false): Levels => {
  const [a, b, c] = [...raw].map((v) => v * scale).sort((x, y) => (lowerIsWorse ? y - x : x - y))
  return { degraded: a!, unhealthy: b!, critical: c! }
}
const thresholdsFrom = (raw: ReadonlyArray<ReadonlyArray<number>>): Thresholds => ({
  poolUsage: levelsFrom(raw[0]!, 1),
  queryTime: levelsFrom(raw[1]!, 20),
  cacheHit: levelsFrom(raw[2]!, 1, true),
  readyDepth: levelsFrom(raw[3]!, 1000),
  oldestReady: levelsFrom(raw[4]!, 10_000),
  expiredLeases: levelsFrom(raw[5]!, 1),
  deadLetters: levelsFrom(raw[6]!, 1),
  outboxBacklog: levelsFrom(raw[7]!, 1000),
  serverConnections: levelsFrom(raw[8]!, 1),
  kafkaLag: levelsFrom(raw[9]!, 1000),
  kafkaDisconnected: levelsFrom(raw[10]!, 5000)
})
const RawThresholds = Schema.Tuple([Raw, Raw, Raw, Raw, Raw, Raw, Raw, Raw, Raw, Raw, Raw])

describe("HealthPolicy", () => {
  it.prop("the status is the worst finding's, and every finding that is not healthy says what to change", {
    numbers: Numbers,
    raw: RawThresholds,
    useDefaults: Schema.Boolean
  }, ({ numbers, raw, useDefaults }) => {
    const report = HealthPolicy.assess(sampleOf(numbers), useDefaults ? HealthPolicy.defaults : thresholdsFrom(raw))
    expect(report.status).toBe(HealthPolicy.worst(report.findings.map((f) => f.status)))
    for (const f of report.findings) {
      if (f.status !== "HEALTHY") expect(f.recommendation, f.check).toMatch(/\w{3,}/)
      else expect(f.recommendation).toBeUndefined()
    }
  })

  it.prop("making any measured value worse never improves the status", {
    numbers: Numbers,
    raw: RawThresholds,
    useDefaults: Schema.Boolean,
    which: int(0, worsen.length - 1),
    by: int(1, 100_000)
  }, ({ by, numbers, raw, useDefaults, which }) => {
    const thresholds = useDefaults ? HealthPolicy.defaults : thresholdsFrom(raw)
    const before = HealthPolicy.assess(sampleOf(numbers), thresholds)
    const after = HealthPolicy.assess(sampleOf(worsen[which]!(numbers, by)), thresholds)
    expect(HealthPolicy.severity(after.status)).toBeGreaterThanOrEqual(HealthPolicy.severity(before.status))
    // Check by check too (most random samples are critical somewhere already).
    for (const f of before.findings) {
      const now = after.findings.find((g) => g.check === f.check)
      expect(now, f.check).toBeDefined()
      expect(HealthPolicy.severity(now!.status), f.check).toBeGreaterThanOrEqual(HealthPolicy.severity(f.status))
    }
  })

  const calm: HealthSample = {
    depth: [],
    oldestReady: [],
    expiredLeases: 0,
    deadLettersLastHour: 0,
    outboxBacklog: 0,
    cache: { hits: 0, reads: 0 },
    server: { connections: 1, maxConnections: 100 }
  }
  const statusOf = (report: HealthPolicy.HealthReport, check: HealthPolicy.Check) => report.findings.find((f) => f.check === check)?.status
  const pool = (inUse: number, max = 100) => ({
    inUse, idle: max - inUse, max, probe: { _tag: "Answered" as const, ms: 1 }, active: { statements: 0, meanMs: 0 }
  })

  it("the default thresholds: a value at a threshold is at its level", () => {
    const at = (sample: Partial<HealthSample>, check: HealthPolicy.Check) => statusOf(HealthPolicy.assess({ ...calm, ...sample }), check)
    // Pool usage 70 / 85 / 95 %.
    expect([69, 70, 84, 85, 94, 95, 100].map((n) => at({ pool: pool(n) }, "pool_usage"))).toEqual(
      ["HEALTHY", "DEGRADED", "DEGRADED", "UNHEALTHY", "UNHEALTHY", "CRITICAL", "CRITICAL"])
    // Query time 100 / 250 / 500 ms: the mean of one statement and the 1 ms probe.
    const query = (ms: number) => at({ pool: { ...pool(0), active: { statements: 1, meanMs: 2 * ms - 1 } } }, "query_time")
    expect([99, 100, 249, 250, 499, 500].map(query)).toEqual(["HEALTHY", "DEGRADED", "DEGRADED", "UNHEALTHY", "UNHEALTHY", "CRITICAL"])
    // Cache hit 90 / 80 / 70 %, lower is worse.
    const cache = (pct: number) => at({ cache: { hits: pct * 100, reads: (100 - pct) * 100 } }, "cache_hit")
    expect([91, 90, 81, 80, 71, 70].map(cache)).toEqual(["HEALTHY", "DEGRADED", "DEGRADED", "UNHEALTHY", "UNHEALTHY", "CRITICAL"])
    const ready = (n: number) => at({ depth: [{ queue: "q", status: "queued", band: "normal", tasks: n, ready: n }] }, "ready_depth")
    expect([9_999, 10_000, 100_000, 1_000_000].map(ready)).toEqual(["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    // A paused queue's tasks wait by the operator's choice: not judged.
    expect(at({ depth: [{ queue: "q", status: "queued", band: "normal", tasks: 2_000_000, ready: 2_000_000 }], pausedQueues: ["q"] }, "ready_depth")).toBe("HEALTHY")
    expect(at({ oldestReady: [{ queue: "q", ageMs: 3_600_000 }], pausedQueues: ["q"] }, "oldest_ready")).toBe("HEALTHY")
    const oldest = (ms: number) => at({ oldestReady: [{ queue: "q", ageMs: ms }] }, "oldest_ready")
    expect([59_999, 60_000, 300_000, 900_000].map(oldest)).toEqual(["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    expect([0, 1, 19, 20, 100].map((n) => at({ expiredLeases: n }, "expired_leases"))).toEqual(
      ["HEALTHY", "DEGRADED", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    expect([0, 1, 10, 100].map((n) => at({ deadLettersLastHour: n }, "dead_letters"))).toEqual(["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    expect([999, 1000, 10_000, 100_000].map((n) => at({ outboxBacklog: n }, "outbox_backlog"))).toEqual(
      ["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    expect([69, 70, 85, 95].map((n) => at({ server: { connections: n, maxConnections: 100 } }, "server_connections"))).toEqual(
      ["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    const lag = (n: number) => at({ kafka: { joined: true, partitions: 1, lag: n, disconnectedMs: 0 } }, "kafka_lag")
    expect([999, 1000, 10_000, 100_000].map(lag)).toEqual(["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"])
    // Out of the group: unhealthy at once, critical from 5 minutes.
    const out = (ms: number) => at({ kafka: { joined: false, partitions: 0, lag: 0, disconnectedMs: ms } }, "kafka_connection")
    expect([0, 299_999, 300_000].map(out)).toEqual(["UNHEALTHY", "UNHEALTHY", "CRITICAL"])
    expect(at({ kafka: { joined: true, partitions: 1, lag: 0, disconnectedMs: 0 } }, "kafka_connection")).toBe("HEALTHY")
  })

  it("a recommendation names the setting to change", () => {
    const report = HealthPolicy.assess({ ...calm, pool: pool(23, 25) })
    const f = report.findings.find((x) => x.check === "pool_usage")!
    expect(f.message).toBe("pool at 92 %: 23 of 25 connections in use, 2 idle")
    expect(f.recommendation).toMatch(/raise DB_POOL_MAX \(now 25\) or lower MAX_CONCURRENT_JOBS/)
    expect(report.status).toBe("UNHEALTHY")
  })

  it("a check without data is unmeasured, never an alarm", () => {
    const report = HealthPolicy.assess({ ...calm, cache: { hits: 10, reads: 500 } })
    expect(report.status).toBe("HEALTHY")
    expect(report.unmeasured.map((u) => u.check).sort()).toEqual(
      ["cache_hit", "kafka_connection", "kafka_lag", "pool_probe", "pool_usage", "query_time"])
    expect(report.unmeasured.find((u) => u.check === "cache_hit")!.reason).toMatch(/too few block accesses/)
  })

  it("a consumer joining its group for the first time is not judged yet; out of it, it is", () => {
    const kafka = { joined: false, partitions: 0, lag: 0, disconnectedMs: 40 }
    const joining = HealthPolicy.assess({ ...calm, kafka: { ...kafka, joining: true } })
    expect(joining.status).toBe("HEALTHY")
    expect(joining.unmeasured.filter((u) => u.check.startsWith("kafka_"))).toEqual([
      { check: "kafka_connection", reason: "the consumer is joining its group" },
      { check: "kafka_lag", reason: "the consumer is joining its group" }
    ])
    expect(HealthPolicy.assess({ ...calm, kafka }).status).toBe("UNHEALTHY")
  })

  it("a probe without an answer is critical; an old sample is a finding, critical when the database failed it", () => {
    const timedOut = HealthPolicy.assess({ ...calm, pool: { ...pool(1), probe: { _tag: "TimedOut", timeoutMs: 2000 } } })
    expect(statusOf(timedOut, "pool_probe")).toBe("CRITICAL")
    expect(statusOf(HealthPolicy.assess({ ...calm, age: { ms: 30_000, intervalMs: 10_000 } }), "sample_age")).toBeUndefined()
    expect(statusOf(HealthPolicy.assess({ ...calm, age: { ms: 30_001, intervalMs: 10_000 } }), "sample_age")).toBe("UNHEALTHY")
    const failing = HealthPolicy.assess({ ...calm, age: { ms: 60_000, intervalMs: 10_000, lastError: "cannot reach PostgreSQL: x" } })
    expect(statusOf(failing, "sample_age")).toBe("CRITICAL")
  })

  it("reads threshold settings: three values in order, in the check's unit", () => {
    const ms = (t: string) => {
      const d = DurationText.parse(t)
      return d === undefined ? undefined : Duration.toMillis(d)
    }
    expect(HealthPolicy.parseLevels("70,85,95", "poolUsage", ms)).toEqual({ degraded: 70, unhealthy: 85, critical: 95 })
    expect(HealthPolicy.parseLevels(" 90, 80 ,70", "cacheHit", ms)).toEqual({ degraded: 90, unhealthy: 80, critical: 70 })
    expect(HealthPolicy.parseLevels("100ms,250ms,1s", "queryTime", ms)).toEqual({ degraded: 100, unhealthy: 250, critical: 1000 })
    for (const [text, key] of [["70,85", "poolUsage"], ["70,85,101", "poolUsage"], ["95,85,70", "poolUsage"], ["70,80,90", "cacheHit"],
      ["1,2,x", "deadLetters"], ["1.5,2,3", "deadLetters"], ["soon,1s,2s", "queryTime"], ["-1,2,3", "readyDepth"]] as const) {
      expect(HealthPolicy.parseLevels(text, key, ms), text).toMatch(/^expected three /)
    }
    for (const key of Object.keys(HealthPolicy.defaults) as Array<keyof Thresholds>) {
      expect(HealthPolicy.parseLevels(HealthPolicy.formatLevels(HealthPolicy.defaults[key], key), key, ms)).toEqual(HealthPolicy.defaults[key])
    }
  })
})
