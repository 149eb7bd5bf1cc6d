import { expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Fiber, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as BackgroundLoop from "../../src/runtime/BackgroundLoop.ts"

it.effect("a loop survives failing and dying steps, pausing 100 ms doubling after each, and ends only when interrupted", () =>
  Effect.gen(function*() {
    const calls = yield* Ref.make(0)
    const failures: Array<string> = []
    // Steps 1 and 2 fail, 3 dies (a defect), the rest succeed.
    const step = Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) =>
      n <= 2 ? Effect.fail(`failure ${n}`) : n === 3 ? Effect.die(new Error("defect")) : Effect.void)
    const fiber = yield* Effect.forkChild(BackgroundLoop.run("test loop", step, {
      every: Duration.seconds(1),
      onFailure: (cause) => failures.push(Cause.pretty(cause).split("\n")[0]!)
    }))
    yield* TestClock.adjust(0)
    expect(yield* Ref.get(calls)).toBe(1)
    yield* TestClock.adjust(Duration.millis(100)) // after the first failure: 100 ms
    expect(yield* Ref.get(calls)).toBe(2)
    yield* TestClock.adjust(Duration.millis(199))
    expect(yield* Ref.get(calls)).toBe(2)
    yield* TestClock.adjust(Duration.millis(1)) // after the second: 200 ms
    expect(yield* Ref.get(calls)).toBe(3)
    yield* TestClock.adjust(Duration.millis(400)) // after the defect: 400 ms
    expect(yield* Ref.get(calls)).toBe(4)
    yield* TestClock.adjust(Duration.seconds(1)) // success: the regular spacing
    expect(yield* Ref.get(calls)).toBe(5)
    expect(failures).toHaveLength(3)
    expect(failures[2]).toMatch(/defect/)
    yield* Fiber.interrupt(fiber)
    expect(fiber.pollUnsafe()?._tag).toBe("Failure")
  }))
