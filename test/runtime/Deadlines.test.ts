import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import { Deadlines } from "../../src/runtime/Deadlines.ts"

// Node's timers and performance.now, faked: time moves only when a test says so.
beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] })
})
afterEach(() => {
  vi.useRealTimers()
})

describe("Deadlines", () => {
  it("expires each deadline once, when due, in due order across durations; cleared ones never", () => {
    const d = new Deadlines()
    const fired: Array<string> = []
    d.set(100, () => fired.push("a100"))
    const b = d.set(100, () => fired.push("b100"))
    vi.advanceTimersByTime(10)
    d.set(50, () => fired.push("c50 (due at 60)"))
    d.set(100, () => fired.push("d100 (due at 110)"))
    d.clear(b)
    vi.advanceTimersByTime(49)
    expect(fired).toEqual([])
    vi.advanceTimersByTime(1)
    expect(fired).toEqual(["c50 (due at 60)"])
    vi.advanceTimersByTime(39)
    expect(fired).toEqual(["c50 (due at 60)"])
    vi.advanceTimersByTime(1)
    expect(fired).toEqual(["c50 (due at 60)", "a100"])
    vi.advanceTimersByTime(10)
    expect(fired).toEqual(["c50 (due at 60)", "a100", "d100 (due at 110)"])
    vi.advanceTimersByTime(1_000)
    expect(fired).toHaveLength(3)
  })

  it("clearing the earliest deadline does not expire the next one early", () => {
    const d = new Deadlines()
    const fired: Array<string> = []
    const first = d.set(10, () => fired.push("first"))
    vi.advanceTimersByTime(5)
    d.set(10, () => fired.push("second (due at 15)"))
    d.clear(first)
    vi.advanceTimersByTime(9)
    expect(fired).toEqual([])
    vi.advanceTimersByTime(1)
    expect(fired).toEqual(["second (due at 15)"])
  })

  it("holds no timer once every deadline is cleared or expired, so it never keeps a process alive", () => {
    const d = new Deadlines()
    const a = d.set(1_000, () => {})
    d.set(5, () => {})
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(5)
    expect(vi.getTimerCount()).toBe(1) // re-armed for `a`
    d.clear(a)
    expect(vi.getTimerCount()).toBe(0)
    d.clear(a) // twice: nothing
    expect(vi.getTimerCount()).toBe(0)
  })

  it("an expiry may set and clear deadlines", () => {
    const d = new Deadlines()
    const fired: Array<string> = []
    const later = d.set(20, () => fired.push("later"))
    d.set(10, () => {
      fired.push("first")
      d.clear(later)
      d.set(10, () => fired.push("set by first (due at 20)"))
    })
    vi.advanceTimersByTime(20)
    expect(fired).toEqual(["first", "set by first (due at 20)"])
    expect(vi.getTimerCount()).toBe(0)
  })

  it("a timeout beyond setTimeout's limit (2^31 - 1 ms) is not fired early, and infinity never", () => {
    const d = new Deadlines()
    const fired: Array<string> = []
    d.set(3_000_000_000, () => fired.push("35 days"))
    d.set(Infinity, () => fired.push("never"))
    vi.advanceTimersByTime(2_147_483_647)
    expect(fired).toEqual([])
    vi.advanceTimersByTime(3_000_000_000 - 2_147_483_647)
    expect(fired).toEqual(["35 days"])
    vi.advanceTimersByTime(10 * 3_000_000_000)
    expect(fired).toEqual(["35 days"])
  })
})
