import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import {
  type Ageing,
  bandOf,
  defaultAgeing,
  effectivePriority,
  Priority,
  PRIORITY_MAX,
  PRIORITY_MIN,
  priorityBands,
  starvationBound
} from "../../src/domain/Priority.ts"

const Seconds = Schema.Finite.check(Schema.isBetween({ minimum: -1e6, maximum: 1e8 }))
const StepSeconds = Schema.Finite.check(Schema.isBetween({ minimum: 0.001, maximum: 3600 }))
const MaxBoost = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 5000 }))
const Spread = PRIORITY_MAX - PRIORITY_MIN

describe("Priority", () => {
  it("accepts integers from -1000 to 1000 only", () => {
    const is = Schema.is(Priority)
    expect([PRIORITY_MIN, 0, PRIORITY_MAX].every(is)).toBe(true)
    expect([PRIORITY_MIN - 1, PRIORITY_MAX + 1, 0.5, Number.NaN].some(is)).toBe(false)
  })

  it("adds one per step waited, not floored, and nothing for negative waits", () => {
    expect(effectivePriority(5, 0)).toBe(5)
    expect(effectivePriority(5, 90)).toBe(6.5)
    expect(effectivePriority(5, -600)).toBe(5)
    expect(effectivePriority(5, 1e9)).toBe(5 + defaultAgeing.maxBoost)
  })

  it("gives the time a low priority needs to catch up", () => {
    const ageing: Ageing = { stepSeconds: 10, maxBoost: 2000 }
    expect(starvationBound(ageing, 100, -100)).toBe(2000)
    expect(starvationBound(ageing, -5, 7)).toBe(0)
    expect(starvationBound({ stepSeconds: 10, maxBoost: 50 }, 100, 0)).toBe(Infinity)
  })

  it.prop(
    "with the default ageing no pair of priorities starves: the bound is finite",
    { high: Priority, low: Priority },
    ({ high, low }) => {
      const bound = starvationBound(defaultAgeing, high, low)
      expect(Number.isFinite(bound)).toBe(true)
      expect(effectivePriority(low, bound)).toBeGreaterThanOrEqual(effectivePriority(high, 0))
    }
  )

  it.prop(
    "ageing is monotone in waiting time and bounded by priority + maxBoost",
    { priority: Priority, a: Seconds, b: Seconds, stepSeconds: StepSeconds, maxBoost: MaxBoost },
    ({ a, b, maxBoost, priority, stepSeconds }) => {
      const ageing = { stepSeconds, maxBoost }
      const early = effectivePriority(priority, Math.min(a, b), ageing)
      const late = effectivePriority(priority, Math.max(a, b), ageing)
      expect(early).toBeLessThanOrEqual(late)
      expect(late).toBeGreaterThanOrEqual(priority)
      expect(late).toBeLessThanOrEqual(priority + maxBoost)
    }
  )

  it.prop(
    "with maxBoost >= PRIORITY_MAX - PRIORITY_MIN a waiting task catches up with any fresh one",
    {
      high: Priority,
      low: Priority,
      stepSeconds: StepSeconds,
      extra: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 5000 }))
    },
    ({ extra, high, low, stepSeconds }) => {
      const ageing = { stepSeconds, maxBoost: Spread + extra }
      const bound = starvationBound(ageing, high, low)
      expect(Number.isFinite(bound)).toBe(true)
      expect(bound).toBeLessThanOrEqual(Spread * stepSeconds)
      const fresh = effectivePriority(high, 0, ageing)
      // Float division may land one ulp short of the tie; the run_at order breaks it anyway.
      expect(effectivePriority(low, bound, ageing)).toBeGreaterThanOrEqual(fresh - 1e-9)
      if (ageing.maxBoost > high - low) {
        expect(effectivePriority(low, bound + stepSeconds, ageing)).toBeGreaterThan(fresh)
      }
      if (bound > 0) expect(effectivePriority(low, bound / 2, ageing)).toBeLessThan(fresh)
    }
  )

  it.prop(
    "when maxBoost is smaller than the gap, the low task never catches up",
    { high: Priority, low: Priority, waited: Seconds, stepSeconds: StepSeconds, maxBoost: MaxBoost },
    ({ high, low, maxBoost, stepSeconds, waited }) => {
      const ageing = { stepSeconds, maxBoost }
      if (maxBoost >= high - low) return
      expect(starvationBound(ageing, high, low)).toBe(Infinity)
      expect(effectivePriority(low, waited, ageing)).toBeLessThan(effectivePriority(high, 0, ageing))
    }
  )
})

describe("priority bands", () => {
  it("high above the default 0, normal at it, low below", () => {
    expect([PRIORITY_MAX, 1, 0, -1, PRIORITY_MIN].map(bandOf)).toEqual(["high", "high", "normal", "low", "low"])
    expect(priorityBands).toEqual(["high", "normal", "low"])
  })
})
