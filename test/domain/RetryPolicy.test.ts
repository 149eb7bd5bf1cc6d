import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Random, Schema } from "effect"
import { TestClock } from "effect/testing"
import { type Classification, withOverrides } from "../../src/domain/Classification.ts"
import { PermanentError, TaskCancelled, TaskTimeout, TransientError } from "../../src/domain/Errors.ts"
import {
  defaults,
  delayMs,
  exponential,
  nextDelayMs,
  nextRunAt,
  none,
  type RetryPolicy,
  toSchedule
} from "../../src/domain/RetryPolicy.ts"

const between = (minimum: number, maximum: number) => Schema.Finite.check(Schema.isBetween({ minimum, maximum }))
const IntBetween = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const Unit = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMaximum: true }))
// Sleeps are whole nanoseconds: allow that rounding when comparing observed delays.
const slack = 1e-3

/**
 * Runs `attempt` under `Effect.retry(toSchedule(policy))` on the TestClock and
 * returns how many runs happened, the wait before each retry, and the exit.
 */
const runRetried = <A, E>(policy: RetryPolicy, attempt: (run: number) => Effect.Effect<A, E>, seed = 1) =>
  Effect.gen(function*() {
    const starts: Array<number> = []
    const fiber = yield* Effect.gen(function*() {
      starts.push(yield* Clock.currentTimeMillis)
      return yield* attempt(starts.length)
    }).pipe(Effect.retry(toSchedule(policy)), Random.withSeed(seed), Effect.forkChild)
    yield* TestClock.adjust("30 days")
    const exit = yield* Fiber.await(fiber)
    const delays = starts.slice(1).map((at, i) => at - starts[i]!)
    return { runs: starts.length, delays, exit }
  })

describe("RetryPolicy", () => {
  it("has the documented defaults and validates its options", () => {
    expect(exponential()).toEqual({ baseMs: 1000, factor: 2, maxDelayMs: 3_600_000, maxAttempts: 25, jitter: 0.3 })
    expect(none.maxAttempts).toBe(1)
    expect(() => exponential({ baseMs: 0 })).toThrow(/baseMs/)
    expect(() => exponential({ jitter: 1.5 })).toThrow(/jitter/)
    expect(() => exponential({ maxAttempts: 2.5 })).toThrow(/maxAttempts/)
    expect(() => exponential({ maxAttempts: 0 })).toThrow(/maxAttempts/)
  })

  it("doubles from the base and never exceeds the cap", () => {
    expect([1, 2, 3, 4].map((n) => delayMs(defaults, n, 0))).toEqual([1000, 2000, 4000, 8000])
    expect(delayMs(defaults, 1, 0.5)).toBe(1150)
    expect(delayMs(defaults, 40, 0.99)).toBe(3_600_000)
  })

  it.prop(
    "delays lie in [base·factor^(n-1), ×(1+jitter)] until the cap, and never above it",
    {
      baseMs: between(1, 60_000),
      factor: between(1, 3),
      maxDelayMs: between(1, 1e9),
      jitter: between(0, 1),
      attempt: IntBetween(1, 80),
      u: Unit
    },
    ({ attempt, baseMs, factor, jitter, maxDelayMs, u }) => {
      const policy = exponential({ baseMs, factor, maxDelayMs, jitter })
      const raw = baseMs * factor ** (attempt - 1)
      const delay = delayMs(policy, attempt, u)
      expect(delay).toBeLessThanOrEqual(maxDelayMs)
      expect(delay).toBeGreaterThanOrEqual(Math.min(raw, maxDelayMs))
      if (raw * (1 + jitter) <= maxDelayMs) {
        expect(delay).toBeGreaterThanOrEqual(raw)
        expect(delay).toBeLessThanOrEqual(raw * (1 + jitter))
      }
    },
    { arbitrary: { runs: 500 } }
  )

  it.prop(
    "with the default factor and jitter, delay n lies in [base·2ⁿ⁻¹, base·2ⁿ⁻¹·1.3] capped",
    { baseMs: between(1, 10_000), attempt: IntBetween(1, 40), u: Unit },
    ({ attempt, baseMs, u }) => {
      const policy = exponential({ baseMs })
      const low = baseMs * 2 ** (attempt - 1)
      const delay = delayMs(policy, attempt, u)
      expect(delay).toBeLessThanOrEqual(policy.maxDelayMs)
      expect(delay).toBeGreaterThanOrEqual(Math.min(low, policy.maxDelayMs))
      expect(delay).toBeLessThanOrEqual(low * 1.3)
    }
  )

  it("is out of attempts from attempt maxAttempts on", () => {
    const policy = exponential({ maxAttempts: 3 })
    const now = new Date(0)
    expect([1, 2, 3, 4].map((attempt) => nextRunAt(policy, attempt, now, 0)?.getTime())).toEqual([1000, 2000, undefined, undefined])
    expect(nextDelayMs(none, 1, 0.5)).toBeUndefined()
  })

  it.prop(
    "nextRunAt is undefined exactly when attempt >= maxAttempts",
    { maxAttempts: IntBetween(1, 50), offset: IntBetween(-3, 3), u: Unit, at: IntBetween(0, 4e12) },
    ({ at, maxAttempts, offset, u }) => {
      const attempt = Math.max(1, maxAttempts + offset)
      const policy = exponential({ maxAttempts })
      const now = new Date(at)
      const next = nextRunAt(policy, attempt, now, u)
      expect(next === undefined).toBe(attempt >= maxAttempts)
      expect(nextDelayMs(policy, attempt, u) === undefined).toBe(attempt >= maxAttempts)
      if (next !== undefined) {
        expect(next.getTime()).toBe(new Date(at + delayMs(policy, attempt, u)).getTime())
      }
    }
  )
})

describe("RetryPolicy.toSchedule", () => {
  const policy = exponential({ baseMs: 1000, maxDelayMs: 5000, maxAttempts: 6 })

  it.effect("retries a transient failure until it succeeds", () =>
    Effect.gen(function*() {
      const { delays, exit, runs } = yield* runRetried(policy, (run) =>
        run < 3 ? Effect.fail(new TransientError({ message: `run ${run}` })) : Effect.succeed("done"))
      expect(exit._tag).toBe("Success")
      expect(runs).toBe(3)
      expect(delays).toHaveLength(2)
    }))

  it.effect("stops at once on a permanent or cancelled failure", () =>
    Effect.gen(function*() {
      const permanent = yield* runRetried(policy, () => Effect.fail(new PermanentError({ message: "no" })))
      expect(permanent.runs).toBe(1)
      expect(permanent.exit._tag).toBe("Failure")
      const cancelled = yield* runRetried(policy, () => Effect.fail(new TaskCancelled({ taskId: "t" })))
      expect(cancelled.runs).toBe(1)
    }))

  it.effect("stops after maxAttempts runs, with capped jittered delays", () =>
    Effect.gen(function*() {
      const { delays, exit, runs } = yield* runRetried(policy, () => Effect.fail(new TaskTimeout({ taskId: "t", timeoutMs: 1 })))
      expect(exit._tag).toBe("Failure")
      expect(runs).toBe(policy.maxAttempts)
      delays.forEach((delay, i) => {
        const low = Math.min(policy.baseMs * 2 ** i, policy.maxDelayMs)
        expect(delay).toBeGreaterThanOrEqual(low - slack)
        expect(delay).toBeLessThanOrEqual(Math.min(low * 1.3, policy.maxDelayMs) + slack)
      })
    }))

  it.effect("gives the delays of delayMs for the Random service's samples", () =>
    Effect.gen(function*() {
      const { delays } = yield* runRetried(policy, () => Effect.fail("boom"), 42)
      const samples = yield* Effect.all(delays.map(() => Random.next)).pipe(Random.withSeed(42))
      expect(delays.length).toBe(policy.maxAttempts - 1)
      delays.forEach((delay, i) => expect(delay).toBeCloseTo(delayMs(policy, i + 1, samples[i]!), 3))
      const again = yield* runRetried(policy, () => Effect.fail("boom"), 42)
      expect(again.delays).toHaveLength(delays.length)
      again.delays.forEach((delay, i) => expect(delay).toBeCloseTo(delays[i]!, 3))
    }))

  it.effect("uses the classifier it is given", () =>
    Effect.gen(function*() {
      const classifier = withOverrides((e) => e === "fatal" ? "permanent" : undefined)
      const exit = yield* Effect.fail("fatal").pipe(
        Effect.retry(toSchedule(policy, classifier)),
        Effect.exit
      )
      expect(exit._tag).toBe("Failure")
    }))

  it.effect.prop(
    "runs min(maxAttempts, failures + 1) times on transient failures",
    { maxAttempts: IntBetween(1, 8), failures: IntBetween(0, 10), seed: Schema.Int },
    ({ failures, maxAttempts, seed }) =>
      Effect.gen(function*() {
        const small = exponential({ baseMs: 10, maxAttempts })
        const { exit, runs } = yield* runRetried(
          small,
          (run) => run <= failures ? Effect.fail(new TransientError({ message: "again" })) : Effect.succeed(run),
          seed
        )
        expect(runs).toBe(Math.min(maxAttempts, failures + 1))
        expect(exit._tag).toBe(failures < maxAttempts ? "Success" : "Failure")
      }),
    { arbitrary: { runs: 40 } }
  )

  it.effect("recurs for transient and timeout classifications only", () =>
    Effect.gen(function*() {
      const classifications: ReadonlyArray<Classification> = ["transient", "timeout", "permanent", "cancelled"]
      const runs = yield* Effect.forEach(classifications, (classification) =>
        Effect.gen(function*() {
          let count = 0
          const fiber = yield* Effect.sync(() => count++).pipe(
            Effect.andThen(Effect.fail("x")),
            Effect.retry(toSchedule(exponential({ maxAttempts: 2 }), () => classification)),
            Effect.forkChild
          )
          yield* TestClock.adjust("1 hour")
          yield* Fiber.await(fiber)
          return count
        }))
      expect(runs).toEqual([2, 2, 1, 1])
    }))
})
