/**
 * Outages: one line when a duty's run of failures begins, Debug while it lasts,
 * one line when it ends. The tracker's decisions against a model (property), and
 * its lines on virtual time.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Fiber, Logger, References, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Outages from "../../src/observability/Outages.ts"
import * as BackgroundLoop from "../../src/runtime/BackgroundLoop.ts"
import { DatabaseError } from "../../src/store/DatabaseError.ts"

interface Line {
  readonly level: string
  readonly message: string
  readonly cause: Cause.Cause<unknown>
}

/** A logger that keeps every line (and hands each to `onLine`). */
const collect = (onLine: (line: Line) => void = () => {}) => {
  const lines: Array<Line> = []
  const logger = Logger.make((o) => {
    const line = { level: o.logLevel, message: String(Array.isArray(o.message) ? o.message[0] : o.message), cause: o.cause }
    lines.push(line)
    onLine(line)
  })
  return { lines, layer: Logger.layer([logger]) }
}

const unreachable = (reason: string) =>
  new DatabaseError({ category: "connection", message: `cannot reach PostgreSQL: ${reason}`, recovery: "check_network", retryable: true })

const hasStack = (line: Line) => /\n\s+at /.test(line.message) || line.cause.reasons.length > 0

describe("Outages.next", () => {
  // Steps: a success, a lost database, two distinct bugs; each after a wait.
  const Steps = Schema.Array(Schema.Struct({
    step: Schema.Literals(["ok", "down", "bugA", "bugB"]),
    wait: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20_000 }))
  }))
  const toStep = (s: "ok" | "down" | "bugA" | "bugB"): Outages.Step =>
    s === "ok" ? { _tag: "Succeeded" } : s === "down" ? { _tag: "Unreachable", reason: "connect ECONNREFUSED" } : { _tag: "Broken", key: s }

  it.prop("one Began per run of identical failures, one Ended per run, its length on the clock", { steps: Steps }, ({ steps }) => {
    let state = Outages.healthy
    let now = 0
    // The model: the previous step, and when the current run of failures began.
    let previous: string | undefined
    let runStart: number | undefined
    let runDown = false
    let runFailures = 0
    for (const { step, wait } of steps) {
      now += wait
      const [decision, after] = Outages.next(state, toStep(step), now)
      state = after
      if (step === "ok") {
        if (runStart === undefined) expect(decision).toEqual({ _tag: "Quiet" })
        else expect(decision).toEqual({ _tag: "Ended", millis: now - runStart, unreachable: runDown, failures: runFailures })
        runStart = undefined
        runDown = false
        runFailures = 0
      } else {
        runStart ??= now
        runDown ||= step === "down"
        runFailures++
        expect(decision._tag).toBe(previous === step ? "Repeated" : "Began")
      }
      previous = step === "ok" ? undefined : step
    }
  })
})

describe("Outages.make", () => {
  it.effect("an outage is one Warn line without a stack, Debug lines while it lasts, one Info line with its length", () => {
    const { lines, layer } = collect()
    return Effect.gen(function*() {
      const tracker = Outages.make("reaper")
      yield* tracker.recovered // nothing failed: nothing said
      yield* tracker.failed(Cause.fail(unreachable("connect ECONNREFUSED postgres://tf:hunter2@db:5432/app")))
      yield* TestClock.adjust(Duration.millis(4_000))
      yield* tracker.failed(Cause.fail(unreachable("Connection closed")))
      yield* TestClock.adjust(Duration.millis(8_300))
      yield* tracker.recovered
      yield* tracker.recovered
      expect(lines.map((l) => [l.level, l.message])).toEqual([
        ["Warn", "reaper: database unreachable: connect ECONNREFUSED postgres://tf:***@db:5432/app; retrying"],
        ["Debug", "reaper: still failing (2 failed steps): Connection closed"],
        ["Info", "reaper: database reachable again after 12.3 s"]
      ])
      expect(lines.filter(hasStack)).toEqual([])
    }).pipe(Effect.provide(layer), Effect.provideService(References.MinimumLogLevel, "Debug"))
  })

  it.effect("a bug is logged at Error with its cause, once per run of identical failures", () => {
    const { lines, layer } = collect()
    return Effect.gen(function*() {
      const tracker = Outages.make("heartbeat")
      const bug = Cause.die(new TypeError("x is undefined"))
      for (let i = 0; i < 3; i++) yield* tracker.failed(bug)
      yield* tracker.failed(Cause.die(new TypeError("y is undefined")))
      yield* TestClock.adjust(Duration.millis(1_500))
      yield* tracker.recovered
      expect(lines.map((l) => [l.level, l.message])).toEqual([
        ["Error", "heartbeat failed; it goes on"],
        ["Error", "heartbeat failed; it goes on"],
        ["Info", "heartbeat works again after 1.5 s (4 failed steps)"]
      ])
      expect(Cause.pretty(lines[0]!.cause)).toMatch(/x is undefined/)
      expect(Cause.pretty(lines[1]!.cause)).toMatch(/y is undefined/)
    }).pipe(Effect.provide(layer))
  })

  it.effect("a background loop that loses the database logs the outage, not its failed steps", () => {
    const { lines, layer } = collect()
    return Effect.gen(function*() {
      let calls = 0
      const step = Effect.suspend(() => ++calls <= 5 ? Effect.fail(unreachable("connect ECONNREFUSED 127.0.0.1:5432")) : Effect.void)
      const fiber = yield* Effect.forkChild(BackgroundLoop.run("reaper", step, { every: Duration.seconds(1) }))
      // Pauses after the five failures: 100 + 200 + 400 + 800 + 1600 ms.
      yield* TestClock.adjust(Duration.millis(3_100))
      expect(calls).toBe(6)
      yield* TestClock.adjust(Duration.seconds(5)) // healthy steps say nothing
      yield* Fiber.interrupt(fiber)
      expect(lines.map((l) => [l.level, l.message])).toEqual([
        ["Warn", "reaper: database unreachable: connect ECONNREFUSED 127.0.0.1:5432; retrying"],
        ["Info", "reaper: database reachable again after 3.1 s"]
      ])
    }).pipe(Effect.provide(layer))
  })
})
