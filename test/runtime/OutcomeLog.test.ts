/**
 * The supervisor's outcome log: a ring until observed, then a sliding queue that
 * starts with the ring's contents in order.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import * as OutcomeLog from "../../src/runtime/OutcomeLog.ts"

describe("OutcomeLog", () => {
  it.effect("keeps the last outcomes before anyone asks, oldest first, then every later one", () =>
    Effect.gen(function*() {
      const log = OutcomeLog.make<number>(3)
      for (let i = 1; i <= 7; i++) log.record(i)
      const queue = yield* log.queue
      expect(yield* Queue.takeAll(queue)).toEqual([5, 6, 7])
      log.record(8)
      log.record(9)
      expect(yield* log.queue).toBe(queue)
      expect(yield* Queue.takeAll(queue)).toEqual([8, 9])
      // Observed, it slides: the oldest unread drop first.
      for (let i = 10; i <= 14; i++) log.record(i)
      expect(yield* Queue.takeAll(queue)).toEqual([12, 13, 14])
    }))

  it.effect("before the ring is full, keeps everything in order", () =>
    Effect.gen(function*() {
      const log = OutcomeLog.make<string>(10)
      log.record("a")
      log.record("b")
      expect(yield* Queue.takeAll(yield* log.queue)).toEqual(["a", "b"])
    }))
})
